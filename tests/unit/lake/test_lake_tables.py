"""The table list: every column it names exists in the table's schema with the right type."""

import pyarrow as pa
import pytest

from pipeline.lake.tables import DATA_TABLES, LAKE_TABLES, PERSONAL_DATA_TABLES, TableSpec
from pipeline.schemas import UTC_TS


@pytest.mark.parametrize("spec", LAKE_TABLES.values(), ids=lambda s: s.name)
def test_named_columns_exist_with_their_types(spec: TableSpec) -> None:
    if spec.collected_column is not None:
        field = spec.schema.field(spec.collected_column)
        assert field.type.equals(UTC_TS)
        assert not field.nullable
    assert spec.by_day <= spec.personal  # only a collection time can give the day
    for column in spec.plate_columns:
        assert spec.schema.field(column).type.equals(pa.string())
    for column in spec.sort_order:
        assert column in spec.schema.names


def test_personal_tables_and_their_clocks() -> None:
    assert dict(PERSONAL_DATA_TABLES) == {
        "plate_reads": "captured_at",
        "passengers": "collected_at",
        "plate_read_versions": "captured_at",
        "subject_restrictions": "collected_at",
    }
    assert set(DATA_TABLES) == {"plate_reads", "passengers"}
    assert DATA_TABLES["plate_reads"].sort_order == ("plate", "captured_at")
    assert DATA_TABLES["passengers"].plate_columns == ("vehicle_plate",)
    assert LAKE_TABLES["subject_restrictions"].day_column is None
    assert not LAKE_TABLES["ingest_offsets"].personal
