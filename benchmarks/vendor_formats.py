"""Decode speed per camera format, and the cost of format detection for canonical input.

In one run, in process (no Kafka, no lake: this measures decoding only), on batches of the
same size as ingest uses:

- ``canonical via decode_plate_reads``: the decoder alone (the hot path before vendor formats);
- ``canonical via decode_batch``: the same bytes through format detection and dispatch (the hot
  path now); their ratio is the regression the vendor support costs canonical input;
- one row per vendor: payloads of that vendor's registered cameras through ``decode_batch``,
  its ratio taken against canonical messages decoded in turn with it (as many, same batches).

Prints events/s (median of ``--repeats`` runs) and ratios. ``--cpu`` times the process's CPU
time instead of the wall clock: on a machine shared with other work, time spent waiting for a
core then does not count, so rates taken minutes apart stay comparable.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pipeline.codec.batch import decode_batch
from pipeline.codec.plate_reads import DecodeLimits, decode_plate_reads
from pipeline.codec.vendors import VENDOR_RULES, VENDORS
from pipeline.reference.sites import DEFAULT_REGISTRY, SiteRegistry, load_registry
from pipeline.simulate.traffic import TrafficModel, encode
from pipeline.simulate.vendor_payloads import encode_vendor

NOW = datetime.now(UTC)
# The traffic model spreads a vendor's reads over its few cameras, so the last ones may lie a
# little after NOW: decode as if a while later (the future-time rule is not what is measured).
DECODED_AT = NOW + timedelta(hours=12)
CUTOFF = NOW - timedelta(days=180)
CLOCK: list[Callable[[], float]] = [time.perf_counter]  # --cpu: time.process_time


def payloads(
    registry: SiteRegistry, vendor: str, count: int
) -> tuple[list[bytes], list[str | None]]:
    model = TrafficModel(registry, seed=5, formats=(vendor,), retransmit_ratio=0.0)
    reads = model.reads(model.start_for(count, NOW))
    rng = random.Random(5)
    values: list[bytes] = []
    types: list[str | None] = []
    for _ in range(count):
        read = next(reads)
        camera = registry.camera(str(read["camera_id"]))
        assert camera is not None
        if vendor == "canonical":
            values.append(encode(read)[1])
            types.append(None)
        else:
            value, content_type = encode_vendor(read, camera, rng)
            values.append(value)
            types.append(content_type)
    return values, types


def one_pass(
    decode: Callable[[list[bytes], list[str | None]], int],
    values: list[bytes],
    types: list[str | None],
    batch: int,
) -> float:
    """Events/s of one pass over ``values`` in batches."""
    started = CLOCK[0]()
    stored = 0
    for s in range(0, len(values), batch):
        stored += decode(values[s : s + batch], types[s : s + batch])
    elapsed = CLOCK[0]() - started
    if stored != len(values):
        raise SystemExit(f"only {stored} of {len(values)} decoded: the benchmark is broken")
    return len(values) / elapsed


Decoder = Callable[[list[bytes], list[str | None]], int]


def interleaved(
    runs_of: list[tuple[Decoder, list[bytes], list[str | None]]], batch: int, repeats: int
) -> list[float]:
    """Median events/s of each decoder on its messages, run in turn (ABAB...) so load swings
    hit them alike."""
    runs: list[list[float]] = [[] for _ in runs_of]
    for _ in range(repeats):
        for i, (decode, values, types) in enumerate(runs_of):
            runs[i].append(one_pass(decode, values, types, batch))
    return [statistics.median(r) for r in runs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="messages per format")
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20k messages, 3 repeats")
    parser.add_argument("--cpu", action="store_true", help="time CPU, not the wall clock")
    args, _ = parser.parse_known_args()
    if args.cpu:
        CLOCK[0] = time.process_time
    count, repeats = (20_000, 3) if args.quick else (args.count, args.repeats)
    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
    limits = DecodeLimits()

    def plain(values: list[bytes], types: list[str | None]) -> int:
        result = decode_plate_reads(
            values, registry=registry, now=DECODED_AT, retention_cutoff=CUTOFF
        )
        return len(result.table)

    def dispatched(values: list[bytes], types: list[str | None]) -> int:
        batch = decode_batch(
            values,
            types,
            registry=registry,
            now=DECODED_AT,
            retention_cutoff=CUTOFF,
            limits=limits,
            vendor_max_bytes=2 * 1024 * 1024,
        )
        return len(batch.result.table)

    rows: list[tuple[str, float, float]] = []
    values, types = payloads(registry, "canonical", count)
    before, after = interleaved(
        [(plain, values, types), (dispatched, values, types)], args.batch, repeats
    )
    rows += [
        ("canonical via decode_plate_reads (before)", before, after),
        ("canonical via decode_batch (now)", after, after),
    ]
    part = count // 4
    for vendor in VENDORS:
        if vendor == "canonical":
            continue
        v_values, v_types = payloads(registry, vendor, part)
        # Canonical again, on as many messages, in turn with the vendor: the ratio of a pair
        # measured in the same minutes.
        canonical, vendor_rate = interleaved(
            [(dispatched, values[:part], types[:part]), (dispatched, v_values, v_types)],
            args.batch,
            repeats,
        )
        rows.append((f"{vendor} via decode_batch", vendor_rate, canonical))

    print(
        f"decode only, {count} messages per format ({part} per vendor), batches of "
        f"{args.batch}, median of {repeats} runs, {'CPU time' if args.cpu else 'wall clock'}"
    )
    print(f"{'format':45} {'events/s':>12} {'vs canonical':>14}")
    for label, value, canonical_rate in rows:
        print(f"{label:45} {value:12,.0f} {value / canonical_rate:14.3f}")
    print(f"canonical regression from format detection: now/before = {after / before:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
