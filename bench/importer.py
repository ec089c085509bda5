"""History import: rows/s through `suqiu import`'s path, next to raw psycopg writing the same rows.

    python -m bench.importer [--rows 20000]

Runs `suqiu import` twice on fresh files: in one process, and with one worker process per core.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.agents import lifecycle
from bench.common import BenchStack, start_stack
from suqiu.base import logs
from suqiu.schemas.codec import Codec

MAPPING = """source_system = "bench-legacy"
[columns]
source_ref = "ref"
submitted_at = "submitted"
uscc = "uscc"
enterprise_name = "name"
channel = "channel"
category = "category"
jurisdiction = "jurisdiction"
title = "title"
content = "content"
department = "department"
replied_at = "replied"
reply = "reply"
closed_at = "closed"
outcome = "outcome"
"""


def write_csv(path: Path, rows: int, prefix: str = "B") -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["ref", "submitted", "uscc", "name", "channel", "category", "jurisdiction", "title", "content",
                "department", "replied", "reply", "closed", "outcome"])
    start = datetime(2025, 3, 3, 9, 30)
    for i in range(rows):
        t = start + timedelta(minutes=i)
        w.writerow([f"{prefix}-{i}", t.isoformat(sep=" "), "91110000600037341L", "天津某某科技有限公司", "hotline",
                    "approval", "tj-binhai", "施工许可进度", "希望了解审批进度", "bh-approval",
                    (t + timedelta(days=2)).isoformat(sep=" "), "已办理", (t + timedelta(days=3)).isoformat(sep=" "),
                    "resolved"])
    path.write_text(buf.getvalue(), "utf-8")


async def raw_baseline(dsn: str, rows: int, clients: int = 16) -> float:
    """Per row, one pipelined transaction: 5 events with outbox rows, the command, the source ref."""
    codec = Codec()
    at = datetime(2025, 3, 3, 1, 30, tzinfo=UTC)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(rows):
        queue.put_nowait(i)

    async def client() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            while not queue.empty():
                i = queue.get_nowait()
                case_id = f"raw-{uuid.uuid4()}"
                datas = lifecycle(case_id, at, codec)
                async with conn.transaction(), conn.pipeline():
                    await conn.execute("INSERT INTO commands (command_id, case_id, request_hash, result) "
                                       "VALUES (%s, %s, %s, '{}')", (f"raw-{case_id}", case_id, b"h"), prepare=True)
                    await conn.execute("INSERT INTO source_refs VALUES ('raw', %s, %s, %s)",
                                       (f"R-{i}", case_id, f"raw-{case_id}"), prepare=True)
                    for seq, data in enumerate(datas, 1):
                        await conn.execute(
                            "WITH e AS (INSERT INTO events (case_id, seq, event_id, event_type, command_id, "
                            "occurred_at, recorded_at, data, hash) VALUES (%s, %s, %s, 'X', 'c', %s, %s, %s, %s) "
                            "RETURNING position) INSERT INTO outbox SELECT position FROM e",
                            (case_id, seq, uuid.uuid4(), at, at, data, data[-32:]), prepare=True)

    t = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return rows / (time.perf_counter() - t)


def run_import(stack: BenchStack, csv_path: Path, mapping: Path, workers: int) -> tuple[float, str]:
    """`suqiu import` as users run it; its own rows/s figure (file read to last commit) and summary."""
    env = {**os.environ, **stack.settings.to_env()}
    done = subprocess.run([sys.executable, "-m", "suqiu", "--log-level", "WARNING", "import", str(csv_path),
                           "--mapping", str(mapping), "--workers", str(workers)],
                          env=env, capture_output=True, text=True, check=True)
    m = re.search(r"\(([\d,]+) rows/s", done.stdout)
    assert m, done.stdout + done.stderr
    return float(m.group(1).replace(",", "")), done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack(partitions=6)
    s = stack.settings
    tmp = stack.tmp
    cores = os.cpu_count() or 1
    try:
        write_csv(tmp / "one.csv", args.rows, "ONE")
        write_csv(tmp / "many.csv", args.rows, "MANY")
        (tmp / "m.toml").write_text(MAPPING, "utf-8")
        raw = asyncio.run(raw_baseline(s.database_url or "", args.rows))
        one, one_out = run_import(stack, tmp / "one.csv", tmp / "m.toml", 1)
        many, many_out = run_import(stack, tmp / "many.csv", tmp / "m.toml", cores)
        print(f"raw psycopg, same rows per case (5 events + outbox, command, source ref), 16 connections: "
              f"{raw:,.0f} rows/s")
        print(f"suqiu import, 1 process (chunks of 500 cases per transaction): {one:,.0f} rows/s "
              f"({one / raw:.2f}x raw)\n  {one_out}")
        print(f"suqiu import, {cores} worker processes: {many:,.0f} rows/s ({many / raw:.2f}x raw)\n  {many_out}")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
