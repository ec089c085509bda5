"""Disaster recovery for the memory-only broker: republish the whole store, in order per case.

A blocking, one-shot writer: kafka-python's producer, as every synchronous tool uses (README,
Libraries). One request in flight per connection, so a retried batch cannot overtake the one
after it and each case stays in order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from kafka import KafkaProducer

from suqiu.base.config import Settings
from suqiu.streams.publishing import STORED_COLUMNS, OutRecord, stored_record
from suqiu.streams.relay import EPOCH_SQL
from suqiu.streams.topics import TopicLayoutError, ensure_topics, partition_for


def restore(conn: psycopg.Connection[Any], settings: Settings, batch: int = 5000,
            progress: Callable[[int], None] | None = None) -> int:
    """Publish every stored event (position order keeps each case's order), then mark the epoch
    so the relay knows this broker holds the store and does not republish it again."""
    assert settings.kafka_bootstrap
    marker = settings.topic("appeals.relay-epoch.v1")
    asyncio.run(ensure_topics(settings, extra=[marker]))  # the workers' own topic layout
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5,
                             batch_size=512 * 1024, max_in_flight_requests_per_connection=1, retries=10,
                             **settings.kafka_security.client_kwargs())
    total = 0
    try:
        found = len(producer.partitions_for(settings.events_topic))
        if found != settings.partitions:
            raise TopicLayoutError(f"{settings.events_topic} has {found} partitions, SUQIU_PARTITIONS says "
                                   f"{settings.partitions}: create it with that many, or set SUQIU_PARTITIONS to match")
        with conn.transaction(), conn.cursor(name="restore") as cur:
            cur.itersize = batch
            cur.execute(f"SELECT {STORED_COLUMNS} FROM events ORDER BY position")
            while rows := cur.fetchmany(batch):
                send(producer, settings.events_topic, [stored_record(settings.system_id, *r) for r in rows],
                     settings.partitions)
                total += len(rows)
                if progress is not None:
                    progress(len(rows))
        epoch = uuid.uuid4().hex
        producer.send(marker, value=epoch.encode(), partition=0).get()
        # No republish under way for the relay to measure (suqiu.streams.catchup): this was it.
        conn.execute(EPOCH_SQL, (settings.events_topic, epoch, None))
        conn.commit()
    finally:
        producer.close()
    return total


def send(producer: KafkaProducer, topic: str, records: Sequence[OutRecord], partitions: int) -> None:
    """`records` to their cases' partitions, each acknowledged before this returns; the first
    failure raises (a restore run again sends everything again: at least once)."""
    futures = [producer.send(topic, key=case_id.encode(), value=value, headers=headers,
                             partition=partition_for(case_id, partitions)) for case_id, value, headers in records]
    producer.flush()
    for future in futures:
        future.get()
