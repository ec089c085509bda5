"""Disaster recovery for the memory-only broker: republish the whole store, in order per case."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer

from suqiu.base.config import Settings
from suqiu.streams.publishing import STORED_COLUMNS, publish, stored_record
from suqiu.streams.relay import EPOCH_SQL
from suqiu.streams.topics import ensure_topics


async def restore(conn: psycopg.AsyncConnection[Any], settings: Settings, batch: int = 5000,
                  progress: Callable[[int], None] | None = None) -> int:
    """Publish every stored event (position order keeps each case's order), then mark the epoch
    so the relay knows this broker holds the store and does not republish it again."""
    assert settings.kafka_bootstrap
    marker = settings.topic("appeals.relay-epoch.v1")
    await ensure_topics(settings, extra=[marker])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5,
                                max_batch_size=512 * 1024)
    await producer.start()
    total = 0
    try:
        async with conn.transaction(), conn.cursor(name="restore") as cur:
            cur.itersize = batch
            await cur.execute(f"SELECT {STORED_COLUMNS} FROM events ORDER BY position")
            while rows := await cur.fetchmany(batch):
                await publish(producer, settings.events_topic, [stored_record(settings.system_id, *r) for r in rows], settings.partitions)
                total += len(rows)
                if progress is not None:
                    progress(len(rows))
        epoch = uuid.uuid4().hex
        await (await producer.send(marker, value=epoch.encode(), partition=0))
        # No republish under way for the relay to measure (suqiu.streams.catchup): this was it.
        await conn.execute(EPOCH_SQL, (settings.events_topic, epoch, None))
    finally:
        await producer.stop()
    return total
