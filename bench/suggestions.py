"""智能分拨 latency: from a submit's 201 to its RoutingSuggested in the store, at a steady rate.

    python -m bench.suggestions [--rate 200] [--seconds 30] [--history 2000]

The embedded stack, its API and one worker; a history of answered cases is imported and a model
trained on it (`suqiu classify train`), then submits arrive at `--rate` per second, from a few
enterprises with texts of several departments' matters (so each has open look-alikes to compare
with). Printed beside it, from the same run: the submits' own HTTP latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import BenchStack, pct, start_stack
from bench.http import Client
from suqiu.base import logs
from suqiu.domain.model import Actor, Role
from suqiu.domain.routing import HISTORY_IMPORT
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime

MATTERS = {
    "bh-market": ("market", ["营业执照变更登记", "食品经营许可证延续", "企业名称变更核准", "个体工商户注销"]),
    "bh-hrss": ("labor", ["社保缴费基数核定", "稳岗补贴申领", "劳动合同纠纷调解", "职业技能培训补贴"]),
    "bh-planning": ("land_planning", ["建设工程规划许可证", "用地红线调整", "容积率核定", "规划条件核实"]),
    "bh-tax": ("tax", ["增值税留抵退税", "发票领用额度", "研发费用加计扣除", "跨区税务迁移"]),
}
ASKS = ["办理进度缓慢，请协调", "材料已提交两周仍无回复", "希望明确办理时限", "咨询具体政策口径"]
USCCS = ["91110000600037341L", "91120116MA05JQ2X9U"]


def text(rng: random.Random, department: str) -> tuple[str, str]:
    matter = rng.choice(MATTERS[department][1])
    return f"关于{matter}的问题", f"我公司{matter}{rng.choice(ASKS)}。编号{rng.randint(1000, 99999)}。"


async def seed(stack: BenchStack, n: int) -> None:
    rng = random.Random(1)
    rt = await Runtime(stack.settings).open()
    try:
        reqs = []
        for i in range(n):
            department = sorted(MATTERS)[i % len(MATTERS)]
            title, content = text(rng, department)
            at = datetime.now(UTC) - timedelta(days=60, minutes=i)
            reqs.append(CommandRequest("import_case", f"seed-{i}", Actor(stack.settings.system_id, Role.SYSTEM,
                                                                          person=HISTORY_IMPORT), {
                "enterprise": {"uscc": USCCS[0], "name": "天津某某科技有限公司"}, "channel": "hotline",
                "category": MATTERS[department][0], "priority": "normal", "jurisdiction": "tj-binhai",
                "title": title, "content": content, "source_system": "old", "source_ref": f"OLD-{i}",
                "submitted_at": at.isoformat(), "department": department,
                "replied_at": (at + timedelta(days=1)).isoformat(), "reply": "已办理",
                "closed_at": (at + timedelta(days=2)).isoformat(), "outcome": "resolved"}))
        for i in range(0, len(reqs), 500):
            await rt.service.run(reqs[i:i + 500])
    finally:
        await rt.close()


async def load(stack: BenchStack, rate: int, seconds: int) -> dict[str, float]:
    """Submit at `rate`/s; the instant each was answered, by case id, and the HTTP latencies."""
    client = Client("127.0.0.1", stack.settings.http_port)
    intake = {"Authorization": f"Bearer {stack.keys['intake']['key']}"}
    rng = random.Random(2)
    answered: dict[str, float] = {}
    latencies: list[float] = []

    async def one() -> None:
        department = rng.choice(sorted(MATTERS))
        title, content = text(rng, department)
        body = {"command_id": str(uuid.uuid4()), "source_system": "bench", "source_ref": uuid.uuid4().hex,
                "enterprise": {"uscc": rng.choice(USCCS), "name": "天津某某科技有限公司"}, "channel": "web",
                "category": MATTERS[department][0], "priority": "normal", "jurisdiction": "tj-binhai",
                "title": title, "content": content}
        t = time.perf_counter()
        status, got = await client.post("/v1/appeals", body, intake)
        latencies.append((time.perf_counter() - t) * 1000)
        if status == 201:
            answered[got["case_id"]] = time.time()

    tasks = []
    start = time.perf_counter()
    for i in range(rate * seconds):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    await client.close()
    answered["__http_p99"] = pct(latencies, 99)
    answered["__http_p50"] = pct(latencies, 50)
    return answered


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--history", type=int, default=2000)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack()
    try:
        stack.spawn("api")
        stack.spawn("worker")
        stack.wait_http()
        asyncio.run(seed(stack, args.history))
        assert stack.settings.database_url
        dsn = stack.settings.database_url
        with psycopg.connect(dsn) as conn:
            for _ in range(600):
                row = conn.execute("SELECT count(*) FROM case_view").fetchone()
                if row and row[0] >= args.history:
                    break
                time.sleep(0.5)
        env = {**os.environ, **stack.settings.to_env()}
        subprocess.run([sys.executable, "-m", "suqiu", "--log-level", "WARNING", "classify", "train"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        time.sleep(2)
        answered = asyncio.run(load(stack, args.rate, args.seconds))
        http_p50, http_p99 = answered.pop("__http_p50"), answered.pop("__http_p99")
        time.sleep(5)
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT case_id, recorded_at FROM events WHERE event_type = 'RoutingSuggested'"
                                ).fetchall()
        lags = [(at.timestamp() - answered[case]) * 1000 for case, at in rows if case in answered]
        out: dict[str, Any] = {
            "submits": len(answered), "suggested": len(lags), "rate": args.rate,
            "suggestion_p50_ms": round(pct(lags, 50), 1), "suggestion_p99_ms": round(pct(lags, 99), 1),
            "http_p50_ms": round(http_p50, 1), "http_p99_ms": round(http_p99, 1)}
        sys.stdout.write(f"{len(answered)} submits at {args.rate}/s: suggestion p50 {out['suggestion_p50_ms']} ms, "
                         f"p99 {out['suggestion_p99_ms']} ms after the 201 ({len(lags)} suggested); the submits' "
                         f"own HTTP latency p50 {out['http_p50_ms']} ms, p99 {out['http_p99_ms']} ms\n")
        sys.stdout.write(json.dumps(out) + "\n")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
