"""The auditors' tool on a large store: one case's history, verify --all, rebuild; each next to
the raw psycopg read rate of the same rows in the same run.

    python -m bench.replay [--cases 100000] [--per-case 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime

import psycopg

from bench.agents import lifecycle
from bench.common import pct, start_stack
from suqiu.base import logs
from suqiu.replay import history, verify
from suqiu.replay.rebuild import rebuild
from suqiu.schemas.codec import Codec


def fill_store(dsn: str, cases: int, per_case: int) -> tuple[float, list[str]]:
    """COPY `cases` chained histories (the common lifecycle, then urges up to `per_case`)."""
    codec = Codec()
    at = datetime(2026, 7, 21, 2, 0, tzinfo=UTC)
    ids: list[str] = []
    t = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY events (case_id, seq, event_id, event_type, command_id, occurred_at, recorded_at, "
                      "data, hash) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int4", "uuid", "text", "text", "timestamptz", "timestamptz", "bytea", "bytea"])
            for _ in range(cases):
                case_id = str(uuid.uuid4())
                ids.append(case_id)
                for seq, data in enumerate(lifecycle(case_id, at, codec, extra_urges=per_case - 5), 1):
                    ev = codec.decode_event(data)
                    copy.write_row((case_id, seq, uuid.UUID(ev.event_id), ev.event_type, ev.command_id,
                                    ev.occurred_at, ev.recorded_at, data, data[-32:]))
        conn.commit()
    return time.perf_counter() - t, ids


def raw_read(dsn: str) -> tuple[float, int]:
    """The same rows, same order, same server-side cursor, doing nothing with them."""
    n = 0
    t = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.transaction(), conn.cursor(name="raw") as cur:
        cur.itersize = 20_000
        cur.execute("SELECT case_id, seq, data, hash, event_type FROM events ORDER BY case_id, seq")
        for _ in cur:
            n += 1
    return n / (time.perf_counter() - t), n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--per-case", type=int, default=10)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack(partitions=6)
    s = stack.settings
    dsn = s.database_url or ""
    codec = Codec()
    try:
        fill_s, ids = fill_store(dsn, args.cases, args.per_case)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE events")
        raw_rate, total = raw_read(dsn)
        lat = []
        with psycopg.connect(dsn) as conn:
            for case_id in ids[:: max(1, len(ids) // 200)]:
                t = time.perf_counter()
                entries = [history.entry(x) for x in history.load(conn, codec, case_id)]
                lat.append((time.perf_counter() - t) * 1000)
                assert len(entries) == args.per_case
            t = time.perf_counter()
            report = verify.verify_store(conn, codec)
            verify_rate = report.events / (time.perf_counter() - t)
            assert report.ok and report.events == total

        rebuild_rates = {}
        for workers in sorted({1, os.cpu_count() or 1}):
            t = time.perf_counter()
            n = asyncio.run(rebuild(dsn, None, lambda: datetime.now(UTC), s.events_topic, s.partitions,
                                    workers=workers))
            assert n == total, (n, total)
            rebuild_rates[workers] = n / (time.perf_counter() - t)
        print(f"store: {total:,} events over {args.cases:,} cases (COPY in {fill_s:.0f} s)")
        print(f"raw psycopg read, (case_id, seq) order, server-side cursor: {raw_rate:,.0f} events/s")
        print(f"one case's history (load + decode + render), {len(lat)} cases: p50 {pct(lat, 50):.1f} ms, "
              f"p99 {pct(lat, 99):.1f} ms")
        print(f"verify --all: {verify_rate:,.0f} events/s ({verify_rate / raw_rate:.2f}x raw read)")
        for workers, rate in rebuild_rates.items():
            print(f"rebuild, {workers} worker(s): {rate:,.0f} events/s ({rate / raw_rate:.3f}x raw read)")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
