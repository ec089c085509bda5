"""What sealing personal data costs: HTTP commands with and without personal fields, a history
read that decrypts against one that has nothing to decrypt, and erasing many subjects.

    python -m bench.personal [--commands 8000] [--rounds 2] [--reads 2000] [--subjects 100000]

Goals (docs/personal-data.md): HTTP commands/s with personal fields ≥ 0.9× the same flow
without them, in the same run; the decryption a history read adds; erasing 100,000 subjects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import psycopg

from bench import ingest
from bench.common import BenchStack, pct, start_stack
from bench.http import Client
from suqiu.base import logs
from suqiu.domain.model import Actor, Role
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime


def with_personal() -> dict[str, Any]:
    body = ingest.submission()
    n = uuid.uuid4().int
    body["enterprise"] = {**body["enterprise"], "contact_name": "张三丰", "contact_phone": f"139{n % 10**8:08d}"}
    body["content"] += f"请回电138{(n >> 40) % 10**8:08d}，法人身份证11010519491231002X。"
    return body


async def flows(port: int, keys: dict[str, Any], commands: int, clients: int, personal: bool) -> tuple[float, list[float], int]:
    """`ingest.closed_loop`'s four-command flow, its submits with or without personal fields."""
    rate, load = await ingest.closed_loop(port, keys, commands, clients, with_personal if personal else ingest.submission)
    return rate, load.latencies, load.errors


async def history_reads(port: int, key: str, cases: list[str], reads: int) -> list[float]:
    client = Client("127.0.0.1", port)
    auth = {"Authorization": f"Bearer {key}"}
    out = []
    try:
        for i in range(reads):
            t = time.perf_counter()
            status, _ = await client.get(f"/v1/appeals/{cases[i % len(cases)]}/history", auth)
            assert status == 200, status
            out.append((time.perf_counter() - t) * 1000)
    finally:
        await client.close()
    return out


async def erase_many(stack: BenchStack, subjects: int) -> dict[str, Any]:
    """Seal `subjects` contacts (one case each, in bulk), then erase them all, and the raw UPDATE
    of as many keys beside it."""
    s = stack.settings
    assert s.database_url
    rt = await Runtime(s).open()
    actor = Actor(s.system_id, Role.SYSTEM)
    try:
        started = time.perf_counter()
        for chunk in range(0, subjects, 1000):
            reqs = []
            for _ in range(min(1000, subjects - chunk)):
                body = with_personal()
                reqs.append(CommandRequest("submit", body.pop("command_id"), actor, body))
            await rt.service.run(reqs)
        seeded = time.perf_counter() - started
        async with rt.pool.connection() as conn:
            cur = await conn.execute("SELECT subject_id::text FROM personal_subjects WHERE wrapped_key IS NOT NULL")
            ids = [r[0] for r in await cur.fetchall()]
        await _projected(s.database_url, len(ids))
        started = time.perf_counter()
        recorded = 0
        for i in range(0, len(ids), 1000):
            recorded += len((await rt.erasure.erase_many(ids[i:i + 1000], "bench", "bench")).recorded)
        erased = time.perf_counter() - started
    finally:
        await rt.close()
    # Raw: the same number of keys deleted in one statement, nothing recorded.
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE k AS SELECT gen_random_uuid() AS s, decode(md5(random()::text), 'hex') AS w "
                     "FROM generate_series(1, %s)", (subjects,))
        t = time.perf_counter()
        conn.execute("UPDATE k SET w = NULL")
        raw = time.perf_counter() - t
    return {"subjects": len(ids), "seed_s": round(seeded, 1), "erase_s": round(erased, 1),
            "erased_per_s": round(len(ids) / erased), "events_recorded": recorded, "raw_update_s": round(raw, 2)}


async def _projected(dsn: str, cases: int, timeout: float = 600) -> None:
    """Wait for the worker to put every case in the read models (erasure finds cases there)."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cur = await conn.execute("SELECT count(*) FROM case_view WHERE state->>'subject' IS NOT NULL")
            row = await cur.fetchone()
            if row and row[0] >= cases:
                return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the read models did not reach {cases} cases")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=8000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--subjects", type=int, default=100_000)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack()
    try:
        s = stack.settings
        for _ in range(2):
            stack.spawn("api")
        stack.wait_http()
        port = s.http_port
        asyncio.run(flows(port, stack.keys, 800, args.clients, False))  # warm-up
        rates: dict[bool, list[float]] = {False: [], True: []}
        lat: dict[bool, list[float]] = {False: [], True: []}
        errors = 0
        for n in range(args.rounds):
            # Each order in turn: whatever the first phase leaves behind (autovacuum, a grown
            # table) must not land on one side only.
            for personal in (False, True) if n % 2 == 0 else (True, False):
                rate, latencies, errs = asyncio.run(flows(port, stack.keys, args.commands, args.clients, personal))
                rates[personal].append(rate)
                lat[personal] += latencies
                errors += errs
        plain_rate, sealed_rate = (sum(rates[p]) / len(rates[p]) for p in (False, True))

        async def cases(personal: bool) -> list[str]:
            client = Client("127.0.0.1", port)
            auth = {"Authorization": f"Bearer {stack.keys['intake']['key']}"}
            out = []
            for _ in range(100):
                body = with_personal() if personal else ingest.submission()
                out.append((await client.post("/v1/appeals", body, auth))[1]["case_id"])
            await client.close()
            return out

        key = str(stack.keys["dispatcher"]["key"])
        plain_cases, sealed_cases = asyncio.run(cases(False)), asyncio.run(cases(True))
        asyncio.run(history_reads(port, key, plain_cases, 200))  # warm-up
        reads_plain = asyncio.run(history_reads(port, key, plain_cases, args.reads))
        reads_sealed = asyncio.run(history_reads(port, key, sealed_cases, args.reads))
        stack.spawn("worker")  # only now: erasure finds cases in the read models; the flows ran without it
        erasure = asyncio.run(erase_many(stack, args.subjects))
        out = {
            "plain_commands_per_s": round(plain_rate), "sealed_commands_per_s": round(sealed_rate),
            "ratio": round(sealed_rate / plain_rate, 3), "errors": errors,
            "plain_p99_ms": round(pct(lat[False], 99), 1), "sealed_p99_ms": round(pct(lat[True], 99), 1),
            "history_plain_p50_ms": round(pct(reads_plain, 50), 2), "history_plain_p99_ms": round(pct(reads_plain, 99), 2),
            "history_sealed_p50_ms": round(pct(reads_sealed, 50), 2),
            "history_sealed_p99_ms": round(pct(reads_sealed, 99), 2), **erasure,
        }
        print(f"HTTP flows ({args.rounds} × {args.commands:,} commands each way, {args.clients} clients):")
        print(f"  no personal fields:   {plain_rate:,.0f} commands/s, p99 {out['plain_p99_ms']} ms  (baseline)")
        print(f"  sealed contact + 2 numbers: {sealed_rate:,.0f} commands/s, p99 {out['sealed_p99_ms']} ms "
              f"= {out['ratio']}× (goal ≥ 0.9×); errors {errors}")
        print(f"history read as a dispatcher: nothing to open p50 {out['history_plain_p50_ms']} / p99 "
              f"{out['history_plain_p99_ms']} ms; decrypting p50 {out['history_sealed_p50_ms']} / p99 "
              f"{out['history_sealed_p99_ms']} ms")
        print(f"erasing {erasure['subjects']:,} subjects (key + one event each): {erasure['erase_s']} s = "
              f"{erasure['erased_per_s']:,}/s, {erasure['events_recorded']:,} events; raw UPDATE of as many keys "
              f"{erasure['raw_update_s']} s (seeding took {erasure['seed_s']} s)")
        print(json.dumps(out))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
