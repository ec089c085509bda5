"""The read audit trail's cost on a read: GET a case at a steady rate with the access log
writing, beside the same reads with its record() made a no-op, in the same run and server.

    python -m bench.access_log [--rate 500] [--seconds 20] [--rounds 2]

The API runs in this process (so the baseline can switch the trail off, which nothing else may);
the load comes from a child process, so its timing does not share the server's event loop.
The goal: the trail adds at most 1 ms to a read's p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from typing import Any

from aiohttp import web

from bench.common import BenchStack, pct, start_stack
from bench.http import Client
from bench.ingest import submission
from suqiu.base import logs
from suqiu.domain.model import Actor, Role
from suqiu.http.api import create_app
from suqiu.http.common import ACCESS_LOG
from suqiu.http.server import ApiRunner
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime
from suqiu.store.access_log import Access


def reads(port: int, key: str, paths: list[str], rate: float, seconds: float, out: Any) -> None:
    """In a child process: GET `paths` round-robin at `rate` per second; puts the latencies (ms)."""
    async def run() -> list[float]:
        client = Client("127.0.0.1", port)
        auth = {"Authorization": f"Bearer {key}"}
        latencies: list[float] = []

        async def one(path: str) -> None:
            t = time.perf_counter()
            status, _ = await client.get(path, auth)
            assert status == 200, status
            latencies.append((time.perf_counter() - t) * 1000)

        tasks, start = [], time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[i % len(paths)])))
        await asyncio.gather(*tasks)
        await client.close()
        return latencies

    out.put(asyncio.run(run()))


async def phase(port: int, key: str, paths: list[str], rate: float, seconds: float) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=reads, args=(port, key, paths, rate, seconds, out), daemon=True)
    child.start()
    latencies: list[float] = await asyncio.to_thread(out.get, True, seconds + 120)
    child.join(30)
    return latencies


async def run(stack: BenchStack, rate: float, seconds: float, rounds: int) -> dict[str, Any]:
    runtime = await Runtime(stack.settings).open()
    cases = []
    for _ in range(200):
        body = submission()
        command_id = body.pop("command_id")
        result = await runtime.service.execute(CommandRequest("submit", command_id,
                                                              Actor(runtime.settings.system_id, Role.INTAKE), body))
        cases.append(result.case_id)
    app = create_app(runtime)
    runner = ApiRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", stack.settings.http_port)
    await site.start()
    paths = [f"/v1/appeals/{c}" for c in cases]
    key = str(stack.keys["auditor"]["key"])
    trail = app[ACCESS_LOG]
    real = trail.record

    def off(access: Access) -> None:
        return None

    figures: dict[str, list[float]] = {"on": [], "off": []}
    await phase(stack.settings.http_port, key, paths, rate, 3)  # warm-up: pools, caches, the JIT of nothing
    for _ in range(rounds):
        for name, record in (("off", off), ("on", real)):
            trail.record = record  # type: ignore[method-assign]
            figures[name] += await phase(stack.settings.http_port, key, paths, rate, seconds)
    trail.record = real  # type: ignore[method-assign]
    await trail.flush()
    async with runtime.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM access_log")
        row = await cur.fetchone()
    await runner.cleanup()
    await runtime.close()
    return {"rate": rate, "reads_per_phase": int(rate * seconds), "rounds": rounds,
            "on_p50_ms": round(pct(figures["on"], 50), 2), "on_p99_ms": round(pct(figures["on"], 99), 2),
            "off_p50_ms": round(pct(figures["off"], 50), 2), "off_p99_ms": round(pct(figures["off"], 99), 2),
            "p99_added_ms": round(pct(figures["on"], 99) - pct(figures["off"], 99), 2),
            "rows_written": int(row[0]) if row else 0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack()
    try:
        r = asyncio.run(run(stack, args.rate, args.seconds, args.rounds))
    finally:
        stack.stop()
    print(f"GET a case at {r['rate']:.0f} reads/s, {r['rounds']} × {r['reads_per_phase']:,} reads each way:")
    print(f"  access log writing:  p50 {r['on_p50_ms']} ms, p99 {r['on_p99_ms']} ms")
    print(f"  record() a no-op:    p50 {r['off_p50_ms']} ms, p99 {r['off_p99_ms']} ms  (baseline, same run)")
    print(f"  the trail adds {r['p99_added_ms']} ms at p99 (goal ≤ 1 ms); {r['rows_written']:,} rows written")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
