from datetime import UTC, datetime, timedelta

import pytest

from pipeline.codec.vendors import VENDOR_RULES
from pipeline.reference.sites import DEFAULT_REGISTRY, SiteRegistry, load_registry
from pipeline.simulate.traffic import TrafficModel

# A Monday and a Saturday (weekend traffic is heavier), every second hour.
ENDS = [
    day + timedelta(hours=h, minutes=13)
    for day in (datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 12, tzinfo=UTC))
    for h in range(0, 24, 2)
]


@pytest.fixture(scope="module")
def registry() -> SiteRegistry:
    return load_registry(DEFAULT_REGISTRY, VENDOR_RULES)


@pytest.mark.parametrize("end", ENDS, ids=lambda t: t.strftime("%a-%H%M"))
def test_the_reads_of_a_start_for_end_before_the_end(registry: SiteRegistry, end: datetime) -> None:
    # Tests send start_for(count, now)'s reads and expect every one stored: a read captured
    # after `now` (beyond the ingest's tolerance) would be refused as a future capture. Seen at
    # 18:13 UTC, when the 20,000th read of seed 32 was captured at 18:22.
    count = 20_000
    model = TrafficModel(registry, seed=32)
    reads = model.reads(model.start_for(count, end))
    last = max(datetime.fromisoformat(str(next(reads)["captured_at"])) for _ in range(count))
    assert last < end
