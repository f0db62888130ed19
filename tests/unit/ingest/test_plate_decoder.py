"""What the plate-read decoder adds to the generic worker's counting."""

from __future__ import annotations

import pyarrow as pa
from prometheus_client import CollectorRegistry

from pipeline.codec.vendors import VENDOR_RULES
from pipeline.config import Settings
from pipeline.ingest.plates import PlateDecoder
from pipeline.metrics import IngestMetrics
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry


def test_reads_stored_with_an_unknown_country_count_as_a_quirk_of_their_format() -> None:
    decoder = PlateDecoder(Settings(), load_registry(DEFAULT_REGISTRY, VENDOR_RULES))
    registry = CollectorRegistry()
    rows = pa.table(
        {
            "plate_country": ["ZZ", "NO", "ZZ", "ZZ"],
            "source_format": ["hikvision", "hikvision", "genetec", "hikvision"],
        }
    )
    decoder.count(IngestMetrics(registry), rows)

    def quirks(fmt: str) -> float | None:
        labels = {"format": fmt, "quirk": "country_unknown"}
        return registry.get_sample_value("anpr_vendor_quirks_total", labels)

    assert (quirks("hikvision"), quirks("genetec")) == (2.0, 1.0)
