"""Start an ingest worker process: checks, ``/metrics``, the lake, signals; then run it.

``anpr ingest plates`` and ``anpr ingest passengers`` call :func:`run_plates` and
:func:`run_passengers`, as ``anpr live`` calls ``live.app.run_live``.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
from typing import Any

import pyarrow as pa
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.ingest.passengers import PassengerDecoder
from pipeline.ingest.plates import PlateDecoder
from pipeline.ingest.worker import Decoder, IngestTotals, LakeIngestor, RunLimits
from pipeline.kafka.retention_check import check_at_start
from pipeline.lake.backend import Storage
from pipeline.lake.catalog import Lake
from pipeline.lake.s3 import refuse_versioned_bucket
from pipeline.metrics import IngestMetrics, serve
from pipeline.reference.sites import SiteRegistry


def run_plates(settings: Settings, registry: SiteRegistry, limits: RunLimits) -> IngestTotals:
    """Consume plate reads into ``plate_reads`` until stopped or ``limits`` are reached."""
    return run_worker(
        settings, settings.ingest.metrics_port, PlateDecoder(settings, registry), limits
    )


def run_passengers(settings: Settings, limits: RunLimits) -> IngestTotals:
    """Consume passenger lists into ``passengers`` until stopped or ``limits`` are reached."""
    return run_worker(
        settings, settings.passengers.metrics_port, PassengerDecoder(settings), limits
    )


def run_worker(
    settings: Settings, metrics_port: int, decoder: Decoder[Any], limits: RunLimits
) -> IngestTotals:
    """Check topic retention, serve ``/metrics``, open the lake and run ``decoder``'s worker.

    SIGTERM and SIGINT ask the worker to stop after committing its current batch.
    """
    bound_memory()
    share_the_gil()
    # A versioned bucket keeps every file it is told to delete: refuse before writing any.
    refuse_versioned_bucket(Storage.from_settings(settings.lake))
    metrics_registry = CollectorRegistry()
    metrics = IngestMetrics(metrics_registry)
    check_at_start(settings, metrics_registry)  # topic retention above the legal limit?
    serve(metrics_registry, metrics_port)
    with Lake.from_settings(settings.lake) as lake:
        # One DuckDB thread for the writer: the worker's own two threads (decode, write)
        # already fill both cores; a second DuckDB thread only competed with the decoding
        # (-18 % CPU per read drained, ADR 0006, "Memory and threads").
        lake.execute("SET threads = 1")
        ingestor = LakeIngestor.connect(settings, decoder, lake=lake, metrics=metrics)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: ingestor.request_stop())
        return ingestor.run(limits)


# How long a thread that holds the GIL runs before one waiting for it gets it (Python: 5 ms).
SWITCH_INTERVAL_S = 0.001


def share_the_gil() -> None:
    """A shorter GIL switch interval for a worker whose two threads take turns on the GIL.

    The polling thread decodes through many short Arrow calls that release the GIL; after
    each it must take the GIL back from the writer thread, which runs numpy and Python
    between its own DuckDB calls, and with the default interval it waited up to 5 ms every
    time. Measured draining 1M reads, default and 1 ms interleaved (benchmarks/hot_path.py's
    worker, 5 pairs on the shared machine): 1 ms was faster in every pair, median 1.36x.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)


# glibc's mallopt parameter numbers.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def bound_memory() -> None:
    """Allocator settings of a worker that allocates and frees a batch at a time.

    Arrow's default pool (mimalloc) and glibc's per-thread arenas (up to 8 per core) each
    kept freed batches mapped, so the RSS grew batch after batch (ADR 0006). Arrow then uses
    the system allocator, glibc at most two arenas (the worker's two threads), and blocks of
    256 KiB or more are mapped on their own and returned when freed (a fixed threshold:
    glibc's own rises after the first large free, and batch-sized buffers then stayed in
    the heap).
    """
    pa.set_memory_pool(pa.system_memory_pool())
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to bound
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, 2)
        libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 1024 * 1024)
