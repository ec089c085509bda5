"""The agents together (SLA timers, department facts, read models) on a pre-filled events topic,
next to a plain Faust agent that only iterates the same topic and a raw aiokafka consumer.

    python -m bench.agents [--events 200000] [--projector-processes N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faust
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import CpuMeter, start_stack
from suqiu.base import logs
from suqiu.base.config import Settings
from suqiu.base.processes import settle_gc
from suqiu.domain import events as e
from suqiu.domain.model import Actor, Enterprise, Role
from suqiu.schemas.codec import GENESIS, Codec
from suqiu.streams.app import create_app

EVENTS_PER_CASE = 5


def lifecycle(case_id: str, at: datetime, codec: Codec, extra_urges: int = 0) -> list[bytes]:
    """Submitted, dispatched, urged (`extra_urges` times), accepted, replied, closed: encoded and chained."""
    system = "tj-binhai"
    payloads: list[tuple[Actor, e.EventPayload]] = [
        (Actor(system, Role.INTAKE), e.AppealSubmitted(
            Enterprise("91110000600037341L", "天津某某科技有限公司"), "hotline", "approval", "normal",
            "tj-binhai", "施工许可审批进度", "二期厂房施工许可已提交三周，希望了解审批进度。", "bench", case_id)),
        (Actor(system, Role.DISPATCHER), e.AppealDispatched(
            "bh-market", None, at + timedelta(hours=2), at + timedelta(days=7))),
        *((Actor(system, Role.DISPATCHER), e.Urged("请尽快办理")) for _ in range(extra_urges)),
        (Actor(system, Role.DEPARTMENT, "bh-market"), e.AppealAccepted("bh-market")),
        (Actor(system, Role.DEPARTMENT, "bh-market"), e.AppealReplied("bh-market", "已办理", at + timedelta(days=9))),
        (Actor(system, Role.DISPATCHER), e.AppealClosed("resolved", None)),
    ]
    out, prev = [], GENESIS
    for seq, (actor, payload) in enumerate(payloads, 1):
        t = at + timedelta(minutes=seq)
        ev = e.Event(str(uuid.uuid4()), case_id, seq, t, t, actor, f"c{seq}", "x", "x", payload)
        data, prev = codec.encode_event(ev, prev)
        out.append(data)
    return out


async def fill(settings: Settings, events: int) -> None:
    assert settings.kafka_bootstrap
    codec = Codec()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5,
                                max_batch_size=512 * 1024)
    await producer.start()
    # Deadlines a month ahead: the SLA agent keeps every clock but has none due. With past
    # deadlines it fired commands at cases that exist only on this topic, never in the store,
    # and retried them every tick, on the worker's loop (bench.timers measures firing).
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    try:
        pending = []
        for _ in range(events // EVENTS_PER_CASE):
            case_id = str(uuid.uuid4())
            for data in lifecycle(case_id, at, codec):
                pending.append(await producer.send(settings.events_topic, value=data, key=case_id.encode()))
            if len(pending) > 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def raw_consumer(settings: Settings, events: int) -> float:
    consumer = AIOKafkaConsumer(settings.events_topic, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"raw-{uuid.uuid4().hex}", auto_offset_reset="earliest")
    await consumer.start()
    seen, t0 = 0, 0.0
    try:
        while seen < events:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            n = sum(len(v) for v in batch.values())
            if n and not t0:
                t0 = time.perf_counter()
            seen += n
        return events / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def plain_faust(settings: Settings, events: int, datadir: Path) -> float:
    app = faust.App(f"plain-{uuid.uuid4().hex}", broker=f"kafka://{settings.kafka_bootstrap}", store="memory://", datadir=str(datadir),
                    consumer_auto_offset_reset="earliest", web_enabled=False, topic_partitions=settings.partitions)
    topic = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    done = asyncio.Event()
    state = {"seen": 0, "t0": 0.0}

    @app.agent(topic)
    async def iterate(stream: faust.StreamT[bytes]) -> None:
        async for _ in stream:
            if not state["seen"]:
                state["t0"] = time.perf_counter()
            state["seen"] += 1
            if state["seen"] >= events:
                done.set()

    app.finalize()
    await app.start()
    try:
        await done.wait()
        return events / (time.perf_counter() - state["t0"])
    finally:
        await app.stop()


async def suqiu_agents(settings: Settings, events: int) -> float:
    """The worker's agents; progress is read from the projection's checkpoint, in the same transaction."""
    assert settings.database_url
    app = create_app(settings)
    app.finalize()
    await app.start()
    try:
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
            t0, first = 0.0, 0
            while True:
                cur = await conn.execute("SELECT coalesce(sum(applied), 0) FROM projection_offsets")
                row = await cur.fetchone()
                applied = int(row[0]) if row else 0
                if applied and not t0:
                    t0, first = time.perf_counter(), applied
                if applied >= events:
                    return (events - first) / (time.perf_counter() - t0)
                await asyncio.sleep(0.05)
    finally:
        try:
            await asyncio.wait_for(app.stop(), 60)
        except TimeoutError:
            print("warning: the Faust app did not stop within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--projector-processes", type=int, default=Settings().projector_processes)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack(partitions=6)
    try:
        s = stack.settings.with_(projector_processes=args.projector_processes)
        t = time.perf_counter()
        asyncio.run(fill(s, args.events))
        fill_s = time.perf_counter() - t
        raw = asyncio.run(raw_consumer(s, args.events))
        # CPU per event of each phase, start-up included: the worker runs in this process,
        # its projector processes are this process's children.
        assert stack.postgres.proc and stack.broker.proc
        # Both phases run with the GC settings `suqiu worker` uses: the ratio is the agents' cost alone.
        settle_gc()
        meter = CpuMeter({"worker and its child processes": os.getpid(), "PostgreSQL": stack.postgres.proc.pid, "broker": stack.broker.proc.pid})
        meter.start()
        plain = asyncio.run(plain_faust(s, args.events, stack.tmp / "plain-faust"))
        plain_cpu = meter.per(args.events)
        meter.start()
        ours = asyncio.run(suqiu_agents(s, args.events))
        ours_cpu = meter.per(args.events)
        with psycopg.connect(s.database_url or "") as conn:
            views = conn.execute("SELECT count(*) FROM case_view").fetchone()
            timeline = conn.execute("SELECT count(*) FROM case_timeline").fetchone()
        print(f"pre-filled {args.events} events in {fill_s:.1f} s")
        print(f"raw aiokafka consumer     {raw:>10,.0f} events/s")
        print(f"plain Faust agent         {plain:>10,.0f} events/s")
        children = f"{s.projector_processes} projector process{'es' if s.projector_processes > 1 else ''}"
        print(f"suqiu agents ({children}) {ours:>10,.0f} events/s   {ours / plain:.2f}x plain Faust, "
              f"{ours / raw:.3f}x raw aiokafka")
        for name, cpu in (("plain Faust agent", plain_cpu), (f"suqiu agents ({children})", ours_cpu)):
            print(f"CPU per event, {name}: " + ", ".join(f"{k} {v:.0f} µs" for k, v in cpu.items()))
        print(f"read models: {views[0] if views else 0} case views, {timeline[0] if timeline else 0} timeline rows")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
