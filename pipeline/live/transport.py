"""faust's aiokafka transport with a fetch wait we choose (ADR 0002, "fetch wait").

faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, fixed in its code. aiokafka
sends one fetch request per broker at a time and leaves out of it every partition whose last
records the app has not consumed yet. While ``anpr live`` works on a batch of plate reads, the
next request therefore asks only for the quiet partitions (the watchlist topic, the tables'
changelogs), and the broker holds it for the full wait because nothing arrives there. Reads
that arrive meanwhile wait for that request to come back: measured on one broker at 2,000
reads/s, the stream stalled for 1.0-1.5 s every couple of seconds and hit latency was p50
1.2 s. With a short wait the stall is bounded by it; the cost is a few more empty fetch
requests per second to the broker.
"""

from __future__ import annotations

from typing import Any

import aiokafka  # type: ignore[import-untyped]
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        set_fetch_max_wait(consumer, self.app.fetch_max_wait_ms)  # type: ignore[attr-defined]
        return consumer


def set_fetch_max_wait(consumer: aiokafka.AIOKafkaConsumer, wait_ms: int) -> None:
    """The consumer's fetch wait, before it starts (aiokafka reads it when it starts)."""
    if not hasattr(consumer, "_fetch_max_wait_ms"):  # an aiokafka upgrade renamed it
        raise RuntimeError("aiokafka.AIOKafkaConsumer has no _fetch_max_wait_ms to set")
    consumer._fetch_max_wait_ms = wait_ms


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """``faust_aiokafka.Transport`` whose worker consumer uses the app's fetch wait."""

    Consumer = _Consumer


class App(faust.App):
    """``faust.App`` on :class:`Transport`; ``fetch_max_wait_ms`` is the consumer's fetch wait."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
