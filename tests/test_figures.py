"""Handling-time percentiles: the bucketed way gives what percentile_cont over every reply gives."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from suqiu.domain.periods import ALL_TIME, Grain, Period
from suqiu.projections import queries, rows
from suqiu.projections.handling import percentiles
from suqiu.stack.embedded import EmbeddedPostgres
from tests.conftest import new_schema

DEPARTMENTS = ["bh-market", "bh-planning", "bh-hrss"]
PERIODS = [ALL_TIME, Period(date(2025, 1, 1), date(2026, 1, 1)), Period(date(2025, 2, 10), date(2025, 7, 3)),
           Period(date(2025, 3, 5), date(2025, 3, 20)), Period(date(2025, 4, 1), date(2025, 5, 1)),
           Period(None, date(2025, 6, 15)), Period(date(2025, 6, 15), None)]
GROUPS: list[str | Grain] = ["all", "department", Grain.MONTH, Grain.QUARTER, Grain.DAY]


def _fill(dsn: str, n: int) -> None:
    """Replies through the projector's own statement, several per case id batch, over 18 months."""
    rng = random.Random(7)
    start = datetime(2024, 12, 31, 16, 0, tzinfo=UTC)  # 2025-01-01 00:00 in Asia/Shanghai
    facts = []
    for i in range(n):
        at = start + timedelta(minutes=rng.randrange(0, 545 * 24 * 60))
        minutes = None if i % 17 == 0 else rng.choice([rng.uniform(0, 60), rng.lognormvariate(7, 1.2), 480.0])
        facts.append((f"case-{i}", 5, rng.choice(DEPARTMENTS), at, at + timedelta(days=3), minutes))
    with psycopg.connect(dsn) as conn:
        for lo in range(0, n, 500):
            batch = facts[lo:lo + 500]
            conn.execute(rows.FACT_SQL[rows.Replied], [list(col) for col in zip(*batch, strict=True)])
        conn.execute(rows.FACT_SQL[rows.Replied], [list(col) for col in zip(*facts[:300], strict=True)])  # again
        conn.commit()


async def _direct(conn: psycopg.AsyncConnection[Any], period: Period, group: str | Grain) -> dict[Any, tuple[float, float]]:
    start, end = period.instants()
    key = queries._key(group, "(replied_at AT TIME ZONE 'Asia/Shanghai')::date")
    cur = await conn.execute(
        f"SELECT {key}, percentile_cont(0.5) WITHIN GROUP (ORDER BY handling_minutes), "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY handling_minutes) FROM replies "
        "WHERE department = ANY(%s) AND handling_minutes IS NOT NULL AND (%s::timestamptz IS NULL OR replied_at >= %s) "
        "AND (%s::timestamptz IS NULL OR replied_at < %s) GROUP BY 1", (DEPARTMENTS, start, start, end, end))
    return {r[0]: (r[1], r[2]) for r in await cur.fetchall()}


async def test_handling_percentiles_equal_percentile_cont(postgres: EmbeddedPostgres) -> None:
    _, dsn = new_schema(postgres)
    _fill(dsn, 6000)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT (SELECT sum(replies) FROM handling_months), "
                                 "(SELECT count(*) FROM replies WHERE handling_minutes IS NOT NULL)")
        assert await cur.fetchone() == (5647, 5647)  # the repeated batch added nothing
        compared = 0
        for period in PERIODS:
            for group in GROUPS:
                if group is Grain.DAY and not period.bounded:
                    continue
                found = await percentiles(conn, [({d: d for d in DEPARTMENTS}, period)], lambda day, g=group: queries._key(g, day),
                                          by_day=group is Grain.DAY)
                expected = await _direct(conn, period, group)
                assert found.keys() == expected.keys(), (period, group)
                for k, (median, p90) in expected.items():
                    assert found[k] == pytest.approx((median, p90), rel=1e-12, abs=1e-9), (period, group, k)
                compared += len(expected)
        assert compared > 500
