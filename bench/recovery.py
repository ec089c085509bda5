"""Catch-up after a broker loss: how long after the relay has republished the store the read
models are current again, next to a raw consumer reading the same republished topic.

    python -m bench.recovery [--cases 5000 100000] [--per-case 10]

For each size: COPY the histories into the store, rebuild the read models from it (they are
current), mark the relay's epoch as one the broker does not hold (what a new, empty broker
looks like), start a worker, and watch PostgreSQL: the relay republishes the whole store and
the projector passes over what the read models hold. The bound: current within 15 s of the
relay finishing the republish.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime

import psycopg
from aiokafka import AIOKafkaConsumer

from bench.common import BenchStack, start_stack
from bench.replay import fill_store
from suqiu.base import logs
from suqiu.base.config import Settings
from suqiu.replay.rebuild import rebuild

BOUND_S = 15.0
POLL_S = 0.1


def _reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, outbox, relay_offsets, relay_state CASCADE")


def _lose_the_broker(dsn: str, topic: str) -> None:
    """The relay's epoch as a broker that lost it would leave it: present in PostgreSQL, absent there."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO relay_state (topic, epoch) VALUES (%s, %s) ON CONFLICT (topic) "
                     "DO UPDATE SET epoch = EXCLUDED.epoch", (topic, f"lost-{uuid.uuid4().hex}"))


def _watch(dsn: str, topic: str, total: int, timeout: float) -> tuple[float, float]:
    """Seconds from the worker's start to the republish done (outbox empty, every event published
    again) and to the read models current (each partition's checkpoint at its new head)."""
    t0 = time.perf_counter()
    relayed = current = 0.0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.perf_counter() - t0 < timeout:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM outbox), (SELECT republished_at FROM relay_state WHERE topic = %s), "
                '(SELECT coalesce(sum("offset" + 1), 0) FROM relay_offsets WHERE topic = %s)',
                (topic, topic)).fetchone()
            assert row is not None
            outbox, republished_at, published = row
            if not relayed and republished_at is not None and outbox == 0 and published >= total:
                relayed = time.perf_counter() - t0
            if relayed:
                behind = conn.execute(
                    "SELECT count(*) FROM relay_offsets r LEFT JOIN projection_offsets p ON p.topic = r.topic "
                    "AND p.partition = r.partition AND p.projection = 'read-models' AND p.updated_at >= %s "
                    'WHERE r.topic = %s AND (p."offset" IS NULL OR p."offset" < r."offset")',
                    (republished_at, topic)).fetchone()
                if behind is not None and behind[0] == 0:
                    current = time.perf_counter() - t0
                    break
            time.sleep(POLL_S)
    return relayed, current


async def _raw_read(settings: Settings, total: int) -> float:
    """A plain aiokafka consumer reading the republished topic from the start, doing nothing."""
    consumer = AIOKafkaConsumer(settings.events_topic, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"raw-{uuid.uuid4().hex}", auto_offset_reset="earliest")
    await consumer.start()
    try:
        seen, t0 = 0, time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            seen += sum(len(v) for v in batch.values())
        return time.perf_counter() - t0
    finally:
        await consumer.stop()


def measure(stack: BenchStack, cases: int, per_case: int) -> str:
    s = stack.settings
    dsn = s.database_url or ""
    _reset(dsn)
    fill_s, _ = fill_store(dsn, cases, per_case)
    total = cases * per_case
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
    t = time.perf_counter()
    asyncio.run(rebuild(dsn, None, lambda: datetime.now(UTC), s.events_topic, s.partitions, workers=2))
    rebuild_s = time.perf_counter() - t
    _lose_the_broker(dsn, s.events_topic)
    worker = stack.spawn("worker")
    try:
        relayed, current = _watch(dsn, s.events_topic, total, timeout=max(300.0, total / 1000))
    finally:
        worker.terminate()
        worker.wait(30)
        stack.children.remove(worker)
    raw_s = asyncio.run(_raw_read(s, total))
    after = current - relayed if current else float("nan")
    verdict = "within" if current and after <= BOUND_S else "OVER"
    return (f"{total:,} events ({cases:,} cases; COPY {fill_s:.0f} s, rebuild {rebuild_s:.0f} s): republished in "
            f"{relayed:.1f} s ({total / relayed if relayed else float('nan'):,.0f} events/s); read models current "
            f"{after:.1f} s after the republish finished ({verdict} the {BOUND_S:.0f} s bound); raw aiokafka read "
            f"of the same topic {raw_s:.1f} s ({total / raw_s:,.0f} events/s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, nargs="+", default=[5_000, 100_000])
    parser.add_argument("--per-case", type=int, default=10)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack(partitions=6)
    try:
        for cases in args.cases:
            print(measure(stack, cases, args.per_case), flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
