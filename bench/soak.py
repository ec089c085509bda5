"""An hour under load: the embedded stack at a steady command rate, start and end compared.

    python -m bench.soak [--minutes 60] [--rate 200] [--window 5] [--flows 64]

The worker (projector, SLA timers, outbox relay) and the API run as `suqiu up` runs them, on
the demo policy (accept within a minute, on wall-clock time), so the timers warn, breach and
open 督办 all along. Cases go the whole way (submit, dispatch, accept, reply, close); one in
twenty is left unaccepted, for the timers. After a warm-up window, the first and the last
window each give the p99 of the acknowledgements, the read models' lag, and the RSS of every
process; the raw baseline is PostgreSQL's own commit p99 in the same windows, so a drift of
the machine shows beside a drift of ours. Errors are HTTP answers ≥ 400 and the error lines
the processes log (warnings are counted and listed apart); at the end no SLA timer may be left
on a closed case. The embedded broker keeps the topics in memory, so its RSS grows with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from bench.common import BenchStack, family, pct, rss_mib, start_stack
from bench.http import Client
from bench.ingest import submission
from suqiu.base import logs
from suqiu.base.processes import die_with_parent

UNACCEPTED_EVERY = 20  # one case in this many is left for the timers


@dataclass
class Window:
    """What one stretch of the run measured."""

    latencies: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    lags: list[int] = field(default_factory=list)
    commands: int = 0

    def summary(self) -> dict[str, Any]:
        return {"commands": self.commands, "p50_ms": round(pct(self.latencies, 50), 1),
                "p99_ms": round(pct(self.latencies, 99), 1), "raw_commit_p99_ms": round(pct(self.raw, 99), 2),
                "lag_max": max(self.lags, default=0), "lag_mean": round(sum(self.lags) / max(len(self.lags), 1), 1)}


class Pace:
    """Open-loop slots at `rate` per second: each caller waits for the next slot, whoever is slow."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.start = time.perf_counter()
        self.slot = 0

    async def take(self) -> None:
        due = self.start + self.slot * self.interval
        self.slot += 1
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


class Soak:
    def __init__(self, port: int, keys: dict[str, Any], dsn: str, rate: float) -> None:
        self.client = Client("127.0.0.1", port)
        self.auth = {role: {"Authorization": f"Bearer {k['key']}"} for role, k in keys.items()}
        self.dsn = dsn
        self.pace = Pace(rate)
        self.window = Window()
        self.errors: list[str] = []
        self.running = True

    async def post(self, role: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await self.pace.take()
        t = time.perf_counter()
        status, data = await self.client.post(f"/v1{path}", body, self.auth[role])
        self.window.latencies.append((time.perf_counter() - t) * 1000)
        self.window.commands += 1
        if status >= 400:
            self.errors.append(f"{status} {body.get('type', 'submit')}: {json.dumps(data, ensure_ascii=False)[:200]}")
        return dict(data)

    async def flows(self) -> None:
        """Case after case, the whole way; every UNACCEPTED_EVERY-th stops at the dispatch."""
        n = 0
        while self.running:
            n += 1
            case = (await self.post("intake", "/appeals", submission())).get("case_id")
            if case is None:
                continue
            path = f"/appeals/{case}/commands"

            def cmd(kind: str, **fields: Any) -> dict[str, Any]:
                return {"type": kind, "command_id": str(uuid.uuid4()), **fields}

            await self.post("dispatcher", path, cmd("dispatch", department="bh-market"))
            if n % UNACCEPTED_EVERY == 0:
                continue
            await self.post("department", path, cmd("accept"))
            await self.post("department", path, cmd("reply", content="已协调办理"))
            await self.post("dispatcher", path, cmd("close", outcome="resolved"))

    async def raw_commits(self) -> None:
        """PostgreSQL's own commit latency beside ours: a row inserted and committed, 5 a second."""
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_soak_raw (at timestamptz)")
            while self.running:
                t = time.perf_counter()
                await conn.execute("INSERT INTO bench_soak_raw VALUES (now())")
                self.window.raw.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(0.2)

    async def lags(self) -> None:
        """Events stored but not yet in the read models, every 5 s (the health check's figure)."""
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            while self.running:
                cur = await conn.execute(
                    "SELECT (SELECT count(*) FROM events) - (SELECT count(*) FROM case_timeline)")
                row = await cur.fetchone()
                self.window.lags.append(int(row[0]) if row else 0)
                await asyncio.sleep(5)

    def next_window(self) -> Window:
        done, self.window = self.window, Window()
        return done


def rss(roots: dict[str, int]) -> dict[str, float]:
    return {name: round(rss_mib(family(pid)), 1) for name, pid in roots.items()}


def logged(path: Path) -> dict[str, Counter[str]]:
    """The warning and error lines a process logged, counted by level and message."""
    out: dict[str, Counter[str]] = {"warning": Counter(), "error": Counter()}
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            level, event = entry.get("level"), str(entry.get("event"))[:120]
        except ValueError:
            level, event = ("error", line[:120]) if "Traceback" in line else (None, "")
        if level in ("error", "critical", "exception"):
            out["error"][event] += 1
        elif level == "warning":
            out["warning"][event] += 1
    return out


async def run(stack: BenchStack, roots: dict[str, int], minutes: float, rate: float, window_min: float,
              flows: int) -> dict[str, Any]:
    s = stack.settings
    assert s.database_url
    soak = Soak(s.http_port, stack.keys, s.database_url, rate)
    started = time.perf_counter()
    tasks = [asyncio.create_task(soak.flows()) for _ in range(flows)]
    curve: list[tuple[float, dict[str, float]]] = []

    async def sample_rss() -> None:
        """RSS of every process each minute: a bounded cache levels off, a leak keeps climbing."""
        while soak.running:
            curve.append((round((time.perf_counter() - started) / 60, 1), rss(roots)))
            await asyncio.sleep(60)

    tasks += [asyncio.create_task(soak.raw_commits()), asyncio.create_task(soak.lags()),
              asyncio.create_task(sample_rss())]
    window = window_min * 60
    await asyncio.sleep(window)  # warm-up: caches, pools, the first timers
    soak.next_window()
    rss_start = rss(roots)
    await asyncio.sleep(window)
    first = soak.next_window()
    await asyncio.sleep(max(0.0, minutes * 60 - window - (time.perf_counter() - started)))
    soak.next_window()
    await asyncio.sleep(window)
    last = soak.next_window()
    rss_end = rss(roots)
    soak.running = False
    await asyncio.gather(*tasks, return_exceptions=True)
    await soak.client.close()
    elapsed = time.perf_counter() - started
    async with await psycopg.AsyncConnection.connect(s.database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM sla_timers JOIN case_view USING (case_id) "
                                 "WHERE status IN ('closed', 'withdrawn')")
        row = await cur.fetchone()
        stale_timers = int(row[0]) if row else -1
        cur = await conn.execute("SELECT count(*), count(DISTINCT case_id) FROM events")
        events, cases = await cur.fetchone() or (0, 0)
    return {"minutes": round(elapsed / 60, 1), "rate": rate, "commands": soak.pace.slot, "events": events,
            "cases": cases, "first": first.summary(), "last": last.summary(), "rss_start_mib": rss_start,
            "rss_end_mib": rss_end, "rss_by_minute": curve, "http_errors": soak.errors,
            "stale_timers_on_closed_cases": stale_timers}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--window", type=float, default=5.0, help="minutes of the warm-up, first and last window")
    parser.add_argument("--flows", type=int, default=64, help="cases in flight at once")
    args = parser.parse_args()
    if args.minutes < 4 * args.window:
        parser.error("--minutes must cover four windows: warm-up, first, middle, last")
    logs.configure("WARNING")
    stack = start_stack()
    policy = resources.files("suqiu") / "policies" / "demo.toml"
    stack.settings = replace(stack.settings, sla_policy=str(policy))
    logs_dir = stack.tmp / "logs"
    logs_dir.mkdir()
    roots: dict[str, int] = {}
    try:
        env = {**os.environ, **stack.settings.to_env()}
        for role in ("worker", "api"):
            out = (logs_dir / f"{role}.log").open("wb")
            proc = subprocess.Popen([sys.executable, "-m", "suqiu", "--log-level", "WARNING", role], env=env,
                                    stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            stack.children.append(proc)
            roots[role] = proc.pid
        stack.wait_http()
        assert stack.postgres.proc is not None and stack.broker.proc is not None
        roots["postgres"], roots["broker"] = stack.postgres.proc.pid, stack.broker.proc.pid
        result = asyncio.run(run(stack, roots, args.minutes, args.rate, args.window, args.flows))
        problems = {role: logged(logs_dir / f"{role}.log") for role in ("worker", "api")}
        first, last = result["first"], result["last"]
        ours = sum(result["rss_start_mib"][r] for r in ("worker", "api"))
        ours_end = sum(result["rss_end_mib"][r] for r in ("worker", "api"))
        lines = [f"{result['minutes']} min at {args.rate:.0f} commands/s: {result['commands']:,} commands, "
                 f"{result['events']:,} events on {result['cases']:,} cases"]
        for name, w in (("first", first), ("last", last)):
            lines.append(f"{name} {args.window:g} min: {w['commands']:,} commands, p50 {w['p50_ms']} ms, "
                         f"p99 {w['p99_ms']} ms (raw PostgreSQL commit p99 {w['raw_commit_p99_ms']} ms), "
                         f"read-model lag mean {w['lag_mean']} max {w['lag_max']} events")
        lines.append(f"p99 drift {last['p99_ms'] / first['p99_ms'] - 1:+.1%} "
                     f"(raw commit p99 drift {last['raw_commit_p99_ms'] / first['raw_commit_p99_ms'] - 1:+.1%})")
        for name in roots:
            a, b = result["rss_start_mib"][name], result["rss_end_mib"][name]
            lines.append(f"RSS {name}: {a} MiB -> {b} MiB ({b / a - 1:+.1%})")
        lines.append(f"RSS of Suqiu's processes (worker, api): {ours:.1f} -> {ours_end:.1f} MiB "
                     f"({ours_end / ours - 1:+.1%})")
        curve = result["rss_by_minute"]
        for name in roots:
            points = [curve[i] for i in sorted({int(k * (len(curve) - 1) / 6) for k in range(7)})] if curve else []
            lines.append(f"RSS {name} by minute: " + ", ".join(f"{m:g}: {r[name]:.0f}" for m, r in points))
        errors = len(result["http_errors"]) + sum(p["error"].total() for p in problems.values())
        lines.append(f"errors: {errors} ({len(result['http_errors'])} HTTP answers >= 400, "
                     + ", ".join(f"{p['error'].total()} error lines from the {r}" for r, p in problems.items())
                     + f"); SLA timers left on closed cases: {result['stale_timers_on_closed_cases']}")
        lines.extend(f"  {line}" for line in result["http_errors"][:5])
        for role, p in problems.items():
            for level in ("error", "warning"):
                lines.extend(f"  {role} {level} x{n}: {event}" for event, n in p[level].most_common(5))
        print("\n".join(lines))
        print(json.dumps({**result, "http_errors": len(result["http_errors"]), "errors": errors,
                          "logged": {r: {k: dict(v) for k, v in p.items()} for r, p in problems.items()}},
                         ensure_ascii=False))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
