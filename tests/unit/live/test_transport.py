"""The live app's faust transport: its worker consumer gets our fetch wait, not faust's 1.5 s."""

from __future__ import annotations

import asyncio

import aiokafka  # type: ignore[import-untyped]
import pytest

from pipeline.live.transport import App, Transport, set_fetch_max_wait


def test_the_worker_consumer_faust_builds_gets_our_fetch_wait() -> None:
    app = App("anpr-live-unit", broker="kafka://127.0.0.1:9", fetch_max_wait_ms=100)
    assert isinstance(app.transport, Transport)
    thread = app.consumer._new_consumer_thread()

    async def build() -> int:  # aiokafka wants a running loop; nothing connects
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(build()) == 100  # faust itself passes 1500


def test_set_fetch_max_wait_replaces_the_value_aiokafka_starts_its_fetcher_with() -> None:
    async def build() -> aiokafka.AIOKafkaConsumer:  # aiokafka wants a running loop
        return aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", fetch_max_wait_ms=1500)

    consumer = asyncio.run(build())
    set_fetch_max_wait(consumer, 100)
    assert consumer._fetch_max_wait_ms == 100


def test_set_fetch_max_wait_refuses_a_consumer_without_the_attribute() -> None:
    class Renamed:
        pass

    with pytest.raises(RuntimeError, match="_fetch_max_wait_ms"):
        set_fetch_max_wait(Renamed(), 100)  # type: ignore[arg-type]
