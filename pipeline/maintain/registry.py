"""Which lake tables hold personal data, and the column that says when each row was collected.

Retention deletes by this column, per table; statistics and erasure use the same list. A table
that holds identifiers (plates, names, document numbers, event ids) gets one line here, with
the column of its collection time (UTC ``TIMESTAMP WITH TIME ZONE``). Tables named here but not
yet created in a lake are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# table -> collection-time column
PERSONAL_DATA_TABLES: Mapping[str, str] = MappingProxyType(
    {
        "plate_reads": "captured_at",
        "passengers": "collected_at",
        "plate_read_versions": "captured_at",  # the rectified read's own collection time
        "subject_restrictions": "collected_at",  # the newest row the restriction covers
    }
)
