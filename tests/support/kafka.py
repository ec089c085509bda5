"""Helpers for tests that talk to the real broker: run a Faust worker in-process, read topics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from suqiu.base.clock import Clock
from suqiu.base.config import Settings
from suqiu.service.runtime import Runtime
from suqiu.streams.app import create_app
from suqiu.streams.signing import sign


@contextlib.asynccontextmanager
async def faust_worker(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Any]:
    """A fresh Faust app with its own runtime (faust #670), started and stopped on the test's loop."""
    app = create_app(settings, Runtime(settings, clock=clock))
    app.finalize()
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 20.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topic` from the start, waiting until at least `expect` are there."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
            if len(out) >= expect and not batch:
                break
    finally:
        await consumer.stop()
    return out


async def read_topics(bootstrap: str, topics: Sequence[str], expect: int,
                      timeout: float = 60.0) -> dict[str, list[ConsumerRecord[bytes, bytes]]]:
    """Every record on `topics` from the start, per topic, read by one consumer until at least
    `expect` are there in all (or `timeout` passes)."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: dict[str, list[ConsumerRecord[bytes, bytes]]] = {t: [] for t in topics}
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and sum(len(v) for v in out.values()) < expect:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                out[tp.topic].extend(records)
    finally:
        await consumer.stop()
    return out


async def produce(bootstrap: str, topic: str,
                  messages: Sequence[tuple[bytes | None, bytes] | tuple[bytes | None, bytes, str | list[Any]]]) -> None:
    """Send (key, value) records, or (key, value, secret): signed with that API key (suqiu.streams.signing),
    or (key, value, headers) as given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        for key, value, *secret in messages:
            headers = (sign(secret[0], value) if isinstance(secret[0], str) else secret[0]) if secret else None
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def committed_offsets(settings: Settings, group: str) -> dict[int, int]:
    """The offsets `group` has committed on the events topic, by partition (absent: none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for p in range(settings.partitions):
            offset = await consumer.committed(TopicPartition(settings.events_topic, p))
            if offset is not None:
                out[p] = offset
        return out
    finally:
        await consumer.stop()
