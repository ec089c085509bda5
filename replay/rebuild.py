"""Drop every read model and rebuild it from the store, in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from aiokafka.partitioner import murmur2

from projections.projector import Incoming, Projector
from schemas.codec import Codec
from suqiu.domain.sla import SlaPolicy

READ_MODELS = ("case_view", "case_timeline", "sla_timers", "assignments", "closures", "projection_offsets")


def partition_for(case_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this key (timers are owned per partition)."""
    return (murmur2(case_id.encode()) & 0x7FFFFFFF) % partitions


async def rebuild(conn: psycopg.AsyncConnection[Any], codec: Codec, policy: SlaPolicy, now: Callable[[], datetime],
                  topic: str, partitions: int, batch: int = 5000,
                  progress: Callable[[int], None] | None = None) -> int:
    """Returns the number of events applied. Live projectors wait on the lock and then carry on."""
    projector = Projector(codec, lambda: policy, now)
    total = 0
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {', '.join(READ_MODELS)}")
        async with conn.cursor(name="rebuild") as cur:
            cur.itersize = batch
            await cur.execute("SELECT case_id, data FROM events ORDER BY position")
            while rows := await cur.fetchmany(batch):
                items = [Incoming(topic, partition_for(r[0], partitions), 0, codec.decode_event(bytes(r[1])))
                         for r in rows]
                total += await projector.apply_in(conn, items, checkpoint=False)
                if progress is not None:
                    progress(len(rows))
        # Everything the relay has published is now reflected: the lag starts from zero.
        await conn.execute(
            'INSERT INTO projection_offsets (projection, topic, partition, "offset", applied, updated_at) '
            'SELECT %s, topic, partition, "offset", 0, now() FROM relay_offsets WHERE topic = %s',
            (projector.name, topic))
    return total
