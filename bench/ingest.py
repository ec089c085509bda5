"""HTTP ingest: commands/s and acknowledgement latency, next to raw psycopg inserting the same rows.

    python -m bench.ingest [--commands 20000] [--clients 32] [--api-procs 2] [--rate 500] [--seconds 10]

Also reports publish lag (commit -> on appeals.events.v1) during the steady-rate phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer

from bench.common import BenchStack, pct, start_stack, summary
from bench.http import Client
from suqiu.base import logs
from suqiu.domain import events as e
from suqiu.domain.model import Actor, Enterprise, Role
from suqiu.schemas.codec import GENESIS, Codec
from suqiu.store.events import NOTIFY_CHANNEL


def submission() -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()), "source_system": "bench", "source_ref": uuid.uuid4().hex,
        "enterprise": {"uscc": "91110000600037341L", "name": "天津某某科技有限公司"},
        "channel": "hotline", "category": "approval", "priority": "normal", "jurisdiction": "tj-binhai",
        "title": "施工许可审批进度", "content": "二期厂房施工许可已提交三周，希望了解审批进度。" * 3,
    }


async def raw_baseline(dsn: str, commands: int, clients: int) -> float:
    """The same rows per command (command, event + outbox, notify) in one pipelined transaction."""
    codec = Codec()
    at = datetime.now(UTC).replace(microsecond=0)
    sample = e.Event(str(uuid.uuid4()), "raw", 1, at, at, Actor("tj-binhai", Role.INTAKE), "c", "c", "c",
                     e.AppealSubmitted(Enterprise("91110000600037341L", "天津某某科技有限公司"), "hotline", "approval",
                                       "normal", "tj-binhai", "施工许可审批进度", "内容" * 30, "bench", "r"))
    data, digest = codec.encode_event(sample, GENESIS)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(commands):
        queue.put_nowait(i)

    async def client() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            while not queue.empty():
                queue.get_nowait()
                cid, case = str(uuid.uuid4()), f"raw-{uuid.uuid4()}"
                async with conn.transaction(), conn.pipeline():
                    await conn.execute("SELECT request_hash, result FROM commands WHERE command_id = %s", (cid,),
                                       prepare=True)
                    await conn.execute(
                        "INSERT INTO commands (command_id, case_id, request_hash, result) VALUES (%s, %s, %s, %s)",
                        (cid, case, digest, json.dumps({"status": "created"})), prepare=True)
                    await conn.execute(
                        "WITH e AS (INSERT INTO events (case_id, seq, event_id, event_type, command_id, occurred_at, "
                        "recorded_at, data, hash) VALUES (%s, 1, %s, 'AppealSubmitted', %s, now(), now(), %s, %s) "
                        "RETURNING position) INSERT INTO outbox (position) SELECT position FROM e",
                        (case, str(uuid.uuid4()), cid, data, digest), prepare=True)
                    await conn.execute("SELECT pg_notify(%s, 'raw')", (NOTIFY_CHANNEL,), prepare=True)

    start = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    elapsed = time.perf_counter() - start
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("DELETE FROM outbox WHERE position IN (SELECT position FROM events WHERE case_id LIKE 'raw-%')")
        await conn.execute("DELETE FROM events WHERE case_id LIKE 'raw-%'")
        await conn.execute("DELETE FROM commands WHERE case_id LIKE 'raw-%'")
    return commands / elapsed


class Load:
    def __init__(self, client: Client, keys: dict[str, Any],
                 make: Callable[[], dict[str, Any]] = submission) -> None:
        self.client = client
        self.make = make
        self.auth = {role: {"Authorization": f"Bearer {k['key']}"} for role, k in keys.items()}
        self.latencies: list[float] = []
        self.errors = 0

    async def post(self, role: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        t = time.perf_counter()
        status, data = await self.client.post(f"/v1{path}", body, self.auth[role])
        if status >= 400:
            self.errors += 1
        self.latencies.append((time.perf_counter() - t) * 1000)
        return dict(data)

    async def case_flow(self) -> None:
        """submit, dispatch, accept, urge: four commands on one case."""
        case = (await self.post("intake", "/appeals", self.make()))["case_id"]
        path = f"/appeals/{case}/commands"
        await self.post("dispatcher", path, {"type": "dispatch", "command_id": str(uuid.uuid4()), "department": "bh-market"})
        await self.post("department", path, {"type": "accept", "command_id": str(uuid.uuid4())})
        await self.post("dispatcher", path, {"type": "urge", "command_id": str(uuid.uuid4()), "note": "请加快"})


async def closed_loop(port: int, keys: dict[str, Any], commands: int, clients: int,
                      make: Callable[[], dict[str, Any]] = submission) -> tuple[float, Load]:
    flows = commands // 4
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(flows):
        queue.put_nowait(i)
    http = Client("127.0.0.1", port)
    load = Load(http, keys, make)

    async def client() -> None:
        while not queue.empty():
            queue.get_nowait()
            await load.case_flow()

    try:
        start = time.perf_counter()
        await asyncio.gather(*[client() for _ in range(clients)])
        elapsed = time.perf_counter() - start
    finally:
        await http.close()
    return flows * 4 / elapsed, load


def lag_consumer(bootstrap: str, topic: str, ready: Any, stop: Any, out: Any) -> None:
    """In its own process, so the load generator's event loop does not delay what it sees."""
    asyncio.run(_consume_lags(bootstrap, topic, ready, stop, out))


async def _consume_lags(bootstrap: str, topic: str, ready: Any, stop: Any, out: Any) -> None:
    codec = Codec()
    lags: list[tuple[float, float, float]] = []  # (recorded at, seen lag, handed-off lag) in s, ms, ms
    # The embedded broker holds a fetch up to fetch_max_wait_ms even when records arrive
    # (see BENCHMARKS.md), so ask often to see "on the topic".
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", group_id=None,
                                fetch_max_wait_ms=10)
    await consumer.start()
    await asyncio.sleep(1.0)
    ready.set()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for r in records:
                    ev = codec.decode_event(r.value)
                    recorded = ev.recorded_at.timestamp()
                    # The record's CreateTime is the relay's send(): commit -> handed to the producer.
                    lags.append((recorded, (now - recorded) * 1000, r.timestamp - recorded * 1000))
    finally:
        await consumer.stop()
    out.put(lags)


async def steady(port: int, keys: dict[str, Any], bootstrap: str, topic: str, rate: int,
                 seconds: float) -> tuple[Load, list[float], list[float]]:
    """Open loop at `rate` commands/s (submits and urges); publish lag from a consumer process."""
    ctx = multiprocessing.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    watcher = ctx.Process(target=lag_consumer, args=(bootstrap, topic, ready, stop, out), daemon=True)
    watcher.start()
    await asyncio.to_thread(ready.wait, 60)
    http = Client("127.0.0.1", port)
    load = Load(http, keys)
    try:
        cases = []
        for _ in range(50):
            case = (await load.post("intake", "/appeals", submission()))["case_id"]
            await load.post("dispatcher", f"/appeals/{case}/commands",
                            {"type": "dispatch", "command_id": str(uuid.uuid4()), "department": "bh-market"})
            cases.append(case)
        load.latencies.clear()
        await asyncio.sleep(1.0)  # the set-up's events are published before the window opens
        started_at = time.time()
        interval, tasks = 1.0 / rate, []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            target = start + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % 2:
                body = {"type": "urge", "command_id": str(uuid.uuid4()), "note": "steady"}
                tasks.append(asyncio.create_task(load.post("dispatcher", f"/appeals/{cases[i % len(cases)]}/commands", body)))
            else:
                tasks.append(asyncio.create_task(load.post("intake", "/appeals", submission())))
        await asyncio.gather(*tasks)
    finally:
        await http.close()
    await asyncio.sleep(2.0)
    stop.set()
    lags = await asyncio.to_thread(out.get, True, 60)
    watcher.join(10)
    # Only events recorded inside the window: the set-up's are not at the steady rate.
    window = [(seen, sent) for recorded, seen, sent in lags if recorded >= started_at]
    return load, [seen for seen, _ in window], [sent for _, sent in window]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--api-procs", type=int, default=2)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack: BenchStack = start_stack()
    try:
        s = stack.settings
        assert s.database_url and s.kafka_bootstrap
        raw = asyncio.run(raw_baseline(s.database_url, args.commands, args.clients))
        for _ in range(args.api_procs):
            stack.spawn("api")
        stack.spawn("relay")
        stack.wait_http()
        rate, load = asyncio.run(closed_loop(s.http_port, stack.keys, args.commands, args.clients))
        steady_load, lags, handed = asyncio.run(steady(s.http_port, stack.keys, s.kafka_bootstrap, s.events_topic, args.rate, args.seconds))
        out = {
            "raw_psycopg_commands_per_s": round(raw), "http_commands_per_s": round(rate),
            "ratio_http_to_raw": round(rate / raw, 3), "closed_loop_errors": load.errors,
            "closed_loop_p50_ms": round(pct(load.latencies, 50), 1), "closed_loop_p99_ms": round(pct(load.latencies, 99), 1),
            "steady_rate": args.rate, "steady_p50_ms": round(pct(steady_load.latencies, 50), 1),
            "steady_p99_ms": round(pct(steady_load.latencies, 99), 1), "steady_errors": steady_load.errors,
            "publish_lag_p50_ms": round(pct(lags, 50), 1), "publish_lag_p99_ms": round(pct(lags, 99), 1),
            "published_events_seen": len(lags),
            "relay_send_lag_p50_ms": round(pct(handed, 50), 1), "relay_send_lag_p99_ms": round(pct(handed, 99), 1),
        }
        lines = [
            f"raw psycopg (same rows, {args.clients} connections): {raw:,.0f} commands/s",
            f"HTTP API ({args.api_procs} processes, {args.clients} clients, {args.commands:,} commands): "
            f"{rate:,.0f} commands/s = {rate / raw:.2f}x raw; {summary(load.latencies)}; errors {load.errors}",
            f"steady {args.rate}/s for {args.seconds:.0f}s: {summary(steady_load.latencies)}; errors {steady_load.errors}",
            f"publish lag commit->seen by a consumer process at {args.rate} events/s: p50 {pct(lags, 50):.1f} ms, "
            f"p99 {pct(lags, 99):.1f} ms ({len(lags)} events)",
            f"  of which commit->relay send (record CreateTime): p50 {pct(handed, 50):.1f} ms, "
            f"p99 {pct(handed, 99):.1f} ms",
            json.dumps(out),
        ]
        print("\n".join(lines))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
