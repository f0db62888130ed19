"""Baseline (c): the same job as a faust-streaming agent, as a faust user would write it.

An app with its own consumer group reads the topic as raw bytes and takes batches with
``stream.take_events`` (``stream.take`` plus each event's partition and offset, which the lake
write needs). Each message goes through the same plain-Python validation as baseline (b)
(:class:`benchmarks.naive.PlainValidator`); rejects are sent to the DLQ with faust's own
producer and awaited before the lake commit; rows and offsets go to the lake in the same
``Lake.write_batch`` transaction as the worker's (a blocking call inside the agent).

faust owns ``sys.argv`` and stdout, so settings come as flags that are stripped before
``app.main()`` runs the worker, and progress goes to a JSON-lines file. The agent never
stops the worker itself: the benchmark terminates it once enough messages are committed.

By hand::

    .venv/bin/python -m benchmarks.faust_baseline --bootstrap 127.0.0.1:9092 \\
        --topic bench.reads --dlq bench.dlq --lake /tmp/faust-lake \\
        --progress /tmp/faust.jsonl --datadir /tmp/faust-data
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import faust

from benchmarks.common import ProgressFile
from benchmarks.naive import PlainLakeWriter, default_validator, dlq_headers
from pipeline.config import IngestSettings
from pipeline.lake.catalog import Lake


def build_app(args: argparse.Namespace) -> faust.App:
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=4,
        web_enabled=False,
        store="memory://",
        datadir=str(args.datadir),
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(args.topic, key_type=bytes, value_type=bytes)
    dlq = app.topic(args.dlq, key_type=bytes, value_type=bytes)
    validator = default_validator()
    progress = ProgressFile(args.progress)
    lake = Lake.open(args.lake)
    writer = PlainLakeWriter(lake, group=args.group, topic=args.topic)

    @app.agent(source)
    async def ingest(stream: Any) -> None:
        async for events in stream.take_events(args.batch_size, within=1):
            batch = writer.batch(validator)
            for event in events:
                message = event.message
                batch.add(event.value, message.key, message.partition, message.offset)
            # force=True: send now, not attached to the event's ack (which comes after the
            # lake commit); then wait for every DLQ ack before the offsets move past them.
            sent = [
                await dlq.send(
                    key=reject.key,
                    value=reject.value,
                    headers=dlq_headers(reject, args.topic),
                    force=True,
                )
                for reject in batch.rejects
            ]
            if sent:
                await asyncio.gather(*sent)
            writer.commit(batch)
            progress.write(**writer.totals.as_dict())

    return app


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--dlq", required=True)
    parser.add_argument("--group", default="anpr-bench-faust")
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--progress", type=Path, required=True, help="JSON lines, one per commit")
    parser.add_argument("--datadir", type=Path, required=True, help="faust's data folder")
    parser.add_argument("--batch-size", type=int, default=IngestSettings().batch_size)
    return parser.parse_args(argv)


def main() -> None:
    app = build_app(parse_args(sys.argv[1:]))
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
