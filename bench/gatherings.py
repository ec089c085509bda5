"""A gathering's appeals in one call: the latency of a 500-item submit, and its cost per item
against the same appeals submitted one by one, in the same run.

    python -m bench.gatherings [--calls 20] [--items 500]

Goal (issue 35): a 500-item call answers within 1 s at p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from bench import ingest
from bench.common import BenchStack, pct, start_stack
from bench.http import Client
from suqiu.base import logs

GATHERING = {"kind": "symposium", "date": "2026-07-20", "jurisdiction": "tj-binhai", "host": "滨海新区营商办",
             "title": "营商环境面对面", "participants": []}


async def calls(stack: BenchStack, n: int, items: int) -> tuple[list[float], int]:
    """`n` calls of `items` appeals each, to `n` gatherings, one after another."""
    client = Client("127.0.0.1", stack.settings.http_port)
    dispatcher = {"Authorization": f"Bearer {stack.keys['dispatcher']['key']}"}
    intake = {"Authorization": f"Bearer {stack.keys['intake']['key']}"}
    latencies, created = [], 0
    try:
        for _ in range(n):
            status, recorded = await client.post("/v1/gatherings", {**GATHERING, "command_id": str(uuid.uuid4())},
                                                 dispatcher)
            assert status == 201, status
            gid = recorded["gathering_id"]
            body = {"appeals": [ingest.submission() for _ in range(items)]}
            t = time.perf_counter()
            status, answer = await client.post(f"/v1/gatherings/{gid}/appeals", body, intake)
            latencies.append((time.perf_counter() - t) * 1000)
            assert status == 200, answer
            created += answer["counts"]["created"]
    finally:
        await client.close()
    return latencies, created


async def singles(stack: BenchStack, n: int, clients: int) -> float:
    """`n` submits one by one from `clients` concurrent clients: seconds per submit."""
    client = Client("127.0.0.1", stack.settings.http_port)
    intake = {"Authorization": f"Bearer {stack.keys['intake']['key']}"}
    left = n

    async def one() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status, _ = await client.post("/v1/appeals", ingest.submission(), intake)
            assert status == 201, status

    t = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(clients)))
    finally:
        await client.close()
    return (time.perf_counter() - t) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack()
    try:
        stack.spawn("api")
        stack.wait_http()
        asyncio.run(calls(stack, 2, 100))  # warm-up
        latencies, created = asyncio.run(calls(stack, args.calls, args.items))
        single = asyncio.run(singles(stack, args.calls * args.items // 4, args.clients))
        per_item = pct(latencies, 50) / args.items
        out: dict[str, Any] = {
            "calls": args.calls, "items": args.items, "created": created,
            "call_p50_ms": round(pct(latencies, 50), 1), "call_p99_ms": round(pct(latencies, 99), 1),
            "call_max_ms": round(max(latencies), 1), "per_item_ms": round(per_item, 3),
            "single_submit_ms": round(single * 1000, 3), "ratio_single_to_item": round(single * 1000 / per_item, 2)}
        print(f"{args.calls} calls of {args.items} appeals: p50 {out['call_p50_ms']} ms, p99 {out['call_p99_ms']} ms "
              f"(goal ≤ 1000 ms), max {out['call_max_ms']} ms; {created:,} created")
        print(f"  per item {out['per_item_ms']} ms; one by one from {args.clients} clients "
              f"{out['single_submit_ms']} ms per submit (baseline, same run): {out['ratio_single_to_item']}×")
        print(json.dumps(out))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
