"""Hostile input at volume, on the embedded stack: `python -m bench.fuzz [--http N] [--kafka N]`.

Sends N mutated HTTP requests (hostile text, JSON, numbers, instants, paths, headers and
encodings) and N hostile Kafka records, beside a baseline of well-formed submits from the
same run, then checks what the issue asks: no 5xx, every answer in the error shape, every
2xx matching the store event for event, every Kafka record answered (a result or a dead
letter), and the read models holding every stored case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import start_stack
from suqiu.domain.model import Actor, Role
from suqiu.schemas.codec import Codec
from suqiu.streams.signing import sign

USCC = "91110000600037341L"
HOSTILE_TEXT = ["\u0000", "\ud800", "\u0007", "\u202e", "\n", " ", "", "x" * 300, "é", "e\u0301", "\x7f",
                "'; DROP TABLE events;--", "\t", "\u2028", "😀" * 50]
HOSTILE_VALUES: list[Any] = [None, True, 0, -1, 2**31, 2**63, 10**30, 1.5, float("inf"), [], {}, [1] * 200,
                             {"a": {"b": {}}}, "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00",
                             "2026-07-21T10:00:00", "not a date"]
FIELDS = ["command_id", "source_system", "source_ref", "channel", "category", "priority", "jurisdiction", "title",
          "content", "occurred_at", "expected_seq", "enterprise", "department", "note", "reason", "items", "rating",
          "outcome", "working_days", "type"]
COMMANDS = ["dispatch", "accept", "transfer", "reply", "close", "urge", "withdraw", "feedback", "supply_materials",
            "request_materials", "request_extension", "escalate", "reopen", "nonsense"]


def submission(rng: random.Random) -> dict[str, Any]:
    return {"command_id": str(uuid.UUID(int=rng.getrandbits(128))), "source_system": "fuzz",
            "source_ref": f"F-{rng.getrandbits(64):x}", "enterprise": {"uscc": USCC, "name": "某公司"},
            "channel": "web", "category": "approval", "priority": "normal", "jurisdiction": "tj-binhai",
            "title": "标题", "content": "内容"}


def mutate(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(FIELDS)
        roll = rng.random()
        if roll < 0.45:
            base = str(body.get(name, "x"))
            cut = rng.randint(0, len(base))
            body[name] = base[:cut] + rng.choice(HOSTILE_TEXT) + base[cut:]
        elif roll < 0.85:
            body[name] = rng.choice(HOSTILE_VALUES)
        else:
            body.pop(name, None)
    return body


def raw_body(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return b"[" * 2000 + b"]" * 2000
    if kind == 1:
        return b'{"n": 1' + b"0" * 5000 + b"}"
    if kind == 2:
        return b'{"command_id": "\\ud800\\u0000"}'
    if kind == 3:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
    if kind == 4:
        return b'{"a": ' * 100 + b"1" + b"}" * 100
    return json.dumps(submission(rng)).encode()[: rng.randint(1, 60)]


async def raw_request(port: int, rng: random.Random, key: str) -> int:
    """Bytes no client library sends: bad header bytes, encodings, methods, lengths."""
    body = json.dumps(submission(rng)).encode()
    variants = [
        b"POST /v1/appeals HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /v1/appeals HTTP/1.1\r\nAuthorization: Bearer " + key.encode() + b"\r\nX-Correlation-Id: \xff\x00\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
        b"POST /v1/appeals HTTP/1.1\r\nAuthorization: Bearer " + key.encode() + b"\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
        b"POST /v1/appeals HTTP/1.1\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
        b"BREW /v1/appeals HTTP/1.1\r\n\r\n",
        b"POST /v1/appeals HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"GET /v1/appeals HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /v1/appeals HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(rng.choice(variants).replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", 1))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status >= 400:
        shape = json.loads(payload)
        assert set(shape) == {"error"}, payload[:200]
    return status


class Tally:
    def __init__(self) -> None:
        self.status: Counter[int] = Counter()
        self.bad_shape = 0
        self.created = 0
        self.events = 0
        self.errors: Counter[str] = Counter()


async def http_phase(port: int, keys: dict[str, str], n: int, cases: list[str], rng: random.Random,
                     concurrency: int = 32) -> Tally:
    tally = Tally()
    base = f"http://127.0.0.1:{port}/v1"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def one(session: aiohttp.ClientSession, r: random.Random) -> None:
        kind = r.random()
        who = r.choice(["intake", "dispatcher", "department", "enterprise", "auditor"])
        headers = {"Authorization": f"Bearer {keys[who]}", "Content-Type": "application/json"}
        if kind < 0.02:
            tally.status[await raw_request(port, r, keys["intake"])] += 1
            return
        if kind < 0.45:
            method, url, data = "POST", f"{base}/appeals", json.dumps(mutate(r, submission(r))).encode()
        elif kind < 0.55:
            method, url, data = "POST", f"{base}/appeals", raw_body(r)
        elif kind < 0.85:
            body = {"type": r.choice(COMMANDS), "command_id": str(uuid.UUID(int=r.getrandbits(128))),
                    "department": "bh-market", "reason": "r", "content": "c", "outcome": "resolved"}
            case = r.choice(cases) if cases and r.random() < 0.8 else r.choice(["x\u0000", "%00", "a" * 300])
            method, url, data = "POST", f"{base}/appeals/{case}/commands", json.dumps(mutate(r, body)).encode()
        else:
            path = r.choice(["/appeals", "/appeals?after=%00", "/appeals?limit=99999999999999999999",
                             "/appeals?state=\u0000", f"/appeals/{r.choice(cases) if cases else 'x'}",
                             "/appeals/%ED%A0%80", "/departments", "/departments/%00/load",
                             "/jurisdictions/tj-binhai/kpis", "/schemas/%00", "/nope"])
            method, url, data = r.choice(["GET", "GET", "DELETE", "PUT"]), f"{base}{path}", None
        try:
            async with session.request(method, url, data=data, headers=headers) as resp:
                tally.status[resp.status] += 1
                answer = await resp.json(content_type=None)
                if resp.status >= 400:
                    if not (isinstance(answer, dict) and set(answer) == {"error"}):
                        tally.bad_shape += 1
                    else:
                        tally.errors[answer["error"]["code"]] += 1
                elif method == "POST":
                    tally.events += len(answer.get("event_ids", [])) if answer.get("status") != "duplicate" else 0
                    tally.created += answer.get("status") == "created"
                    if answer.get("status") == "created" and r.random() < 0.5:
                        cases.append(answer["case_id"])
        except (aiohttp.ClientError, json.JSONDecodeError) as exc:
            tally.errors[f"client: {type(exc).__name__}"] += 1

    async def worker(seed: int) -> None:
        r = random.Random(seed)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while not queue.empty():
                queue.get_nowait()
                await one(session, r)

    await asyncio.gather(*(worker(rng.getrandbits(32)) for _ in range(concurrency)))
    return tally


async def baseline(port: int, key: str, n: int, rng: random.Random) -> float:
    """Well-formed submits through the same client: the rate the fuzz runs beside."""
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        sem = asyncio.Semaphore(32)

        async def one() -> None:
            async with sem, session.post(f"http://127.0.0.1:{port}/v1/appeals", json=submission(rng),
                                         headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == 201, await resp.text()

        await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - started)


Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def kafka_records(n: int, rng: random.Random, codec: Codec, secret: str) -> list[Record]:
    """Hostile command records: most signed with `secret` (an intake key), one kind unsigned."""
    intake = Actor("tj-binhai", Role.INTAKE)
    out: list[Record] = []
    for i in range(n):
        kind = 7 if i % 400 == 7 else i % 7  # a 2 MB one in 400: the broker keeps them all in memory
        body = submission(rng)
        command_id = body.pop("command_id")
        if kind == 0:
            key, value = b"garbage", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        elif kind == 1:
            key, value = b"cut", codec.encode_command("submit", body, command_id=command_id, actor=intake)[:20]
        elif kind == 2:
            key, value = b"unknown-fp", b"\xc3\x01" + rng.getrandbits(64).to_bytes(8, "little") + b"\x00"
        elif kind in (3, 4, 5):
            name = rng.choice(["title", "source_ref", "content", "channel"])
            body[name] = str(body[name]) + rng.choice(["\u0000", "\u0007", "", " " * 3, "x" * 30000])
            cid = rng.choice([command_id, " ", "a\u0000b", "x" * 200])
            key, value = cid.encode(), codec.encode_command("submit", body, command_id=cid, actor=intake)
        elif kind == 6:
            key, value = None, b""  # aiokafka sends no record without key and value: the empty one
        else:
            key, value = b"big", b"\xc3\x01" + bytes(2 * 1024 * 1024)
        out.append((key, value, [] if kind == 5 else sign(secret, value)))
    return out


async def kafka_phase(bootstrap: str, commands: str, results: str, dlq: str, n: int, rng: random.Random,
                      secret: str) -> tuple[int, int, float]:
    codec = Codec()
    records = kafka_records(n, rng, codec, secret)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=3 * 1024 * 1024,
                                linger_ms=5)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send(commands, key=key, value=value, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(results, dlq, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, fetch_max_wait_ms=50, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    answered = Counter[str]()
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, msgs in batch.items():
                answered[tp.topic] += len(msgs)
            if sum(answered.values()) >= n and not batch:
                break
    finally:
        await consumer.stop()
    return answered[results], answered[dlq], time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", type=int, default=100_000)
    parser.add_argument("--kafka", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    stack = start_stack(partitions=3)
    s = stack.settings
    try:
        stack.spawn("worker")
        stack.spawn("api")
        stack.wait_http()
        assert s.database_url and s.kafka_bootstrap
        keys = {role: str(k["key"]) for role, k in stack.keys.items()}
        rate = asyncio.run(baseline(s.http_port, keys["intake"], 2000, rng))
        started = time.perf_counter()
        tally = asyncio.run(http_phase(s.http_port, keys, args.http, [], rng))
        fuzz_seconds = time.perf_counter() - started
        with psycopg.connect(s.database_url) as conn:
            refs = conn.execute("SELECT count(*) FROM source_refs").fetchone()
            events = conn.execute("SELECT count(*) FROM events").fetchone()
        assert refs and events
        results, dead, kafka_seconds = asyncio.run(kafka_phase(
            s.kafka_bootstrap, s.commands_topic, s.results_topic, s.dlq_topic, args.kafka, rng, keys["intake"]))
        time.sleep(5)
        with psycopg.connect(s.database_url) as conn:
            cases = conn.execute("SELECT count(DISTINCT case_id) FROM events").fetchone()
            viewed = conn.execute("SELECT count(*) FROM case_view").fetchone()
        assert cases and viewed
        fivexx = sum(v for k, v in tally.status.items() if k >= 500)
        out = sys.stdout.write
        out(f"baseline: well-formed submits {rate:,.0f}/s (2,000, 32 clients)\n")
        out(f"http fuzz: {args.http:,} requests in {fuzz_seconds:.1f} s ({args.http / fuzz_seconds:,.0f}/s), "
            f"by status {dict(sorted(tally.status.items()))}\n")
        out(f"  5xx {fivexx}; answers outside the error shape {tally.bad_shape}; error codes "
            f"{dict(tally.errors.most_common())}\n")
        out(f"  store: {refs[0] - 2000:,} new cases for {tally.created:,} answered 201; "
            f"{events[0] - 2000:,} events for {tally.events:,} event ids answered\n")
        out(f"kafka fuzz: {args.kafka:,} records -> {results:,} results + {dead:,} dead letters = "
            f"{results + dead:,} answers in {kafka_seconds:.1f} s\n")
        out(f"read models: {viewed[0]:,} cases in case_view of {cases[0]:,} stored\n")
        ok = (fivexx == 0 and tally.bad_shape == 0 and results + dead == args.kafka
              and viewed[0] == cases[0])
        out("all held\n" if ok else "FAILED\n")
        return 0 if ok else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
