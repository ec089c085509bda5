"""1,000,000 open SLA clocks in one worker: breach lateness, idle timer CPU, worker RSS.

    python -m bench.timers [--clocks 1000000] [--live 2000]

`--live` real cases are dispatched with a 2-minute wall-clock accept goal and left alone;
the rest of the clocks are timer rows due in a month. Lateness is SlaBreached's recorded_at
minus its deadline, read back from the event store.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import cpu_seconds, family, pct, rss_mib, start_stack
from suqiu.base import logs
from suqiu.domain.events import SlaBreached
from suqiu.domain.model import Actor, Role
from suqiu.schemas.codec import Codec
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime

POLICY = 'version = "bench-timers"\nsupervision_after = "60m"\n[default]\naccept = "2m"\nresolve = "60m"\n' \
         'follow_up = "60m"\nwall_clock = true\n'


def fill_clocks(dsn: str, n: int, partitions: int) -> float:
    far = datetime.now(UTC) + timedelta(days=30)
    t = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY sla_timers (case_id, clock, kind, fire_at, due_at, partition) FROM STDIN") as copy:
            for i in range(n):
                due = far + timedelta(seconds=i % 86400)
                copy.write_row((f"idle-{i}", "resolve", "breach", due, due, i % partitions))
        conn.commit()
    return time.perf_counter() - t


async def dispatch_live(runtime: Runtime, n: int) -> None:
    intake, dispatcher = Actor("tj-binhai", Role.INTAKE), Actor("tj-binhai", Role.DISPATCHER)
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with gate:
            r = await runtime.service.execute(CommandRequest("submit", str(uuid.uuid4()), intake, {
                "source_system": "bench", "source_ref": f"timers-{i}",
                "enterprise": {"uscc": "91110000600037341L", "name": "天津某某科技有限公司"},
                "channel": "hotline", "category": "approval", "priority": "normal", "jurisdiction": "tj-binhai",
                "title": "施工许可", "content": "进度"}))
            await runtime.service.execute(CommandRequest("dispatch", str(uuid.uuid4()), dispatcher,
                                                         {"department": "bh-market"}, case_id=r.case_id))

    await asyncio.gather(*(one(i) for i in range(n)))


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _breach(codec: Codec, data: bytes) -> SlaBreached:
    payload = codec.decode_event(data).payload
    assert isinstance(payload, SlaBreached)
    return payload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clocks", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=2000)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack(partitions=6)
    policy = stack.tmp / "policy.toml"
    policy.write_text(POLICY, "utf-8")
    stack.settings = stack.settings.with_(sla_policy=str(policy))
    s = stack.settings
    dsn = s.database_url or ""
    try:
        copy_s = fill_clocks(dsn, args.clocks - args.live, s.partitions)
        with psycopg.connect(dsn) as conn:
            conn.execute("ANALYZE sla_timers")
            t = time.perf_counter()
            for _ in range(20):
                conn.execute("SELECT case_id FROM sla_timers WHERE partition = ANY(%s) AND fire_at <= now() "
                             "ORDER BY fire_at LIMIT 500", (list(range(s.partitions)),)).fetchall()
            raw_ms = (time.perf_counter() - t) / 20 * 1000

        async def live() -> None:
            rt = await Runtime(s).open()
            try:
                await dispatch_live(rt, args.live)
            finally:
                await rt.close()

        t = time.perf_counter()
        asyncio.run(live())
        created = datetime.now(UTC)
        dispatch_s = time.perf_counter() - t
        worker = stack.spawn("worker")
        while count(dsn, "SELECT count(*) FROM case_view") < args.live:
            time.sleep(0.5)
        clocks = count(dsn, "SELECT count(*) FROM sla_timers")
        # Idle: every clock is waiting; nothing falls due before the first warning at 96 s.
        idle_window = max(5.0, min(30.0, (created + timedelta(seconds=90) - datetime.now(UTC)).total_seconds()))
        pids = family(worker.pid)
        c0 = cpu_seconds(pids)
        time.sleep(idle_window)
        idle_cpu = (cpu_seconds(pids) - c0) / idle_window * 100
        deadline = time.monotonic() + 400
        while count(dsn, "SELECT count(*) FROM events WHERE event_type = 'SlaBreached'") < args.live:
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        rss = rss_mib(pids)
        codec = Codec()
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT recorded_at, data FROM events WHERE event_type = 'SlaBreached'").fetchall()
        late = [(r[0] - _breach(codec, bytes(r[1])).due_at).total_seconds() for r in rows]
        print(f"open clocks: {clocks:,} timer rows ({args.clocks - args.live:,} copied in {copy_s:.1f} s; "
              f"{args.live} live cases dispatched in {dispatch_s:.1f} s)")
        print(f"idle timer CPU (worker and its {len(pids) - 1} child processes, {idle_window:.0f} s window): {idle_cpu:.1f} % of one core")
        print(f"breaches emitted: {len(late)} of {args.live}; lateness after the deadline: p50 {pct(late, 50):.2f} s, "
              f"p99 {pct(late, 99):.2f} s, max {max(late, default=float('nan')):.2f} s")
        print(f"worker RSS (with its child processes: projector, resource tracker): {rss:.0f} MiB")
        print(f"raw psycopg: the timers' due query over {clocks:,} rows takes {raw_ms:.2f} ms "
              f"(the worker runs it every {s.timer_interval} s per tick)")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
