"""Figures at long history: department load, jurisdiction KPIs, a year by month, the ranking,
the overdue list and the board's overview, over HTTP, with 1,000,000 cases over three years in
the read models; next to a raw `count(*)` over the same rows in the same run.

    python -m bench.kpis [--cases 1000000] [--requests 200]

The read models are filled by SQL, as the projector would have left them (cases, assignments,
replies, closures and the daily facts); the API reads them through its ordinary query path.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

import aiohttp
import psycopg

from bench.common import pct, start_stack
from suqiu.base import logs
from suqiu.domain.sla import CHINA
from suqiu.projections.rows import DAY_COUNTS

YEARS = 3
OPEN_DAYS = 15  # cases submitted in the last OPEN_DAYS days are still open; the rest are closed
DUE_DAYS = 10   # an open case's next deadline, after submission: the older third is overdue

# One case per row of generate_series: its department, times and outcome follow from its number,
# so a run is reproducible. Minutes are working minutes, as the projector records them.
CASES_SQL = """
CREATE TEMP TABLE bench_departments AS
  SELECT row_number() OVER (ORDER BY code)::int - 1 AS i, code, jurisdiction FROM departments;
CREATE TEMP TABLE bench_cases AS
SELECT g, 'bench-' || lpad(g::text, 8, '0') AS case_id, d.code AS department, d.jurisdiction,
       s.submitted, s.submitted + interval '2 hours' AS assigned,
       s.submitted >= %(now)s - make_interval(days => %(open_days)s) AS open,
       (g * 37 %% 2400 + 30)::float8 AS minutes
FROM generate_series(1, %(n)s) g
CROSS JOIN LATERAL (SELECT %(start)s::timestamptz + (%(now)s::timestamptz - %(start)s::timestamptz) * (g::float8 / %(n)s)
                    AS submitted) s
JOIN bench_departments d ON d.i = (g::bigint * 7919) %% (SELECT count(*) FROM bench_departments);

INSERT INTO case_view (case_id, seq, status, department, jurisdiction, category, priority, channel, title,
                       enterprise_uscc, enterprise_name, submitted_at, assigned_at, accept_due, resolve_due,
                       follow_up_due, next_due, warn_at, warned, breached, supervised, reopen_count, closed_at,
                       outcome, rating, state, updated_at)
SELECT case_id, CASE WHEN open THEN 3 ELSE 7 END, CASE WHEN open THEN 'accepted' ELSE 'closed' END, department,
       jurisdiction, 'permits', 'normal', 'hotline', '诉求 ' || g, '91120116' || lpad((g %% 100000)::text, 10, '0'),
       '企业 ' || (g %% 100000), submitted, assigned, assigned + interval '1 day',
       assigned + make_interval(days => %(due_days)s),
       NULL, CASE WHEN open THEN assigned + make_interval(days => %(due_days)s) END,
       CASE WHEN open THEN assigned + make_interval(days => %(due_days)s - 2) END,
       open AND assigned + make_interval(days => %(due_days)s - 2) <= %(now)s,
       open AND assigned + make_interval(days => %(due_days)s) <= %(now)s,
       open AND assigned + make_interval(days => %(due_days)s) <= %(now)s AND g %% 3 = 0, 0,
       CASE WHEN NOT open THEN assigned + make_interval(mins => minutes::int) + interval '1 day' END,
       CASE WHEN NOT open THEN CASE WHEN g %% 10 = 0 THEN 'unresolved' ELSE 'resolved' END END,
       CASE WHEN NOT open THEN CASE WHEN g %% 12 = 0 THEN 'dissatisfied' ELSE 'satisfied' END END,
       '{}', %(now)s
FROM bench_cases;

INSERT INTO assignments (case_id, seq, department, assigned_at, accept_due, accepted_at, responded_at)
SELECT case_id, 2, department, assigned, assigned + interval '1 day',
       assigned + make_interval(hours => (g %% 30)::int), assigned + make_interval(hours => (g %% 30)::int)
  FROM bench_cases;

INSERT INTO replies (case_id, seq, department, replied_at, resolve_due, handling_minutes)
SELECT case_id, 5, department, assigned + make_interval(mins => minutes::int),
       assigned + make_interval(days => %(due_days)s), minutes FROM bench_cases WHERE NOT open;

INSERT INTO closures (case_id, cycle, department, closed_at, outcome, replied_at, resolve_due, handling_minutes,
                      rating, reopened)
SELECT v.case_id, 1, v.department, v.closed_at, v.outcome, r.replied_at, r.resolve_due, r.handling_minutes,
       v.rating, false
FROM case_view v JOIN replies r USING (case_id) WHERE v.case_id LIKE 'bench-%%';
"""

# The daily facts, summed from the rows above by the same definitions the projector counts by.
DAYS_SQL = """
WITH facts AS (
  SELECT department, (assigned_at AT TIME ZONE 'Asia/Shanghai')::date AS day, 1 AS assigned, 1 AS accepted,
         (accepted_at <= accept_due)::int AS accepted_on_time, 0 AS acceptances, 0 AS replied,
         0 AS replied_on_time, 0 AS closed, 0 AS resolved, 0 AS handled, 0 AS rated, 0 AS satisfied
    FROM assignments
  UNION ALL
  SELECT department, (accepted_at AT TIME ZONE 'Asia/Shanghai')::date, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0
    FROM assignments
  UNION ALL
  SELECT department, (replied_at AT TIME ZONE 'Asia/Shanghai')::date, 0, 0, 0, 0, 1,
         (replied_at <= resolve_due)::int, 0, 0, 0, 0, 0 FROM replies
  UNION ALL
  SELECT department, (closed_at AT TIME ZONE 'Asia/Shanghai')::date, 0, 0, 0, 0, 0, 0, 1,
         (outcome = 'resolved')::int, 1, (rating IS NOT NULL)::int, (rating = 'satisfied')::int FROM closures
)
INSERT INTO department_days (department, day, assigned, accepted, accepted_on_time, acceptances, replied,
                             replied_on_time, closed, resolved, handled, rated, satisfied, responded_on_time)
SELECT department, day, sum(assigned), sum(accepted), sum(accepted_on_time), sum(acceptances), sum(replied),
       sum(replied_on_time), sum(closed), sum(resolved), sum(handled), sum(rated), sum(satisfied),
       sum(accepted_on_time)
FROM facts GROUP BY 1, 2
"""


def fill(dsn: str, cases: int, now: datetime) -> float:
    start = now - timedelta(days=365 * YEARS)
    t = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        params = {"n": cases, "now": now, "start": start, "open_days": OPEN_DAYS, "due_days": DUE_DAYS}
        for statement in CASES_SQL.split(";\n"):
            if statement.strip():
                conn.execute(statement, params)
        conn.execute(DAYS_SQL)
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    assert "breached" in DAY_COUNTS  # the facts above leave `breached` and `reopened` at their default 0
    return time.perf_counter() - t


def raw_count(dsn: str, requests: int) -> list[float]:
    """The baseline: count(*) over every case the figures are drawn from, on a held connection."""
    out = []
    with psycopg.connect(dsn) as conn:
        for _ in range(requests):
            t = time.perf_counter()
            conn.execute("SELECT count(*) FROM case_view").fetchone()
            out.append((time.perf_counter() - t) * 1000)
    return out


async def timings(base: str, key: str, paths: dict[str, str], requests: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/board/login", data={"key": key}, allow_redirects=False) as r:
            session = r.cookies["suqiu_board"].value
        headers = {"Authorization": f"Bearer {key}", "Cookie": f"suqiu_board={session}"}
        for name, path in paths.items():
            samples = []
            for i in range(requests + 5):
                t = time.perf_counter()
                async with http.get(base + path, headers=headers, allow_redirects=False) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"{path}: HTTP {r.status}")
                if i >= 5:  # the first few warm the pool and the caches
                    samples.append((time.perf_counter() - t) * 1000)
            out[name] = samples
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    logs.configure("WARNING")
    stack = start_stack()
    try:
        assert stack.settings.database_url
        dsn = stack.settings.database_url
        now = datetime.now(UTC)
        seconds = fill(dsn, args.cases, now)
        print(f"filled {args.cases:,} cases over {YEARS} years in {seconds:.0f} s")
        stack.spawn("api")
        stack.wait_http()
        today = now.astimezone(CHINA).date()
        year = {"from": date(today.year - 1, today.month, 1).isoformat(),
                "to": date(today.year, today.month, 1).isoformat()}
        month = {"from": date(today.year, today.month, 1).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
        paths = {
            "department load, a year": f"/v1/departments/bh-market/load?{urlencode(year)}",
            "department load, all time": "/v1/departments/bh-market/load",
            "city KPIs, a year": f"/v1/jurisdictions/tj/kpis?{urlencode(year)}",
            "city KPIs, a year by month": f"/v1/jurisdictions/tj/kpis?{urlencode({**year, 'by': 'month'})}",
            "city ranking, a year": f"/v1/jurisdictions/tj/ranking?{urlencode(year)}",
            "overdue list, 50": "/v1/appeals?overdue=true&limit=50",
            "board overview, this month": f"/board/?{urlencode(month)}",
        }
        goals = {"overdue list, 50": 20.0, "board overview, this month": 300.0}
        found = asyncio.run(timings(f"http://127.0.0.1:{stack.settings.http_port}",
                                    str(stack.keys["dispatcher"]["key"]), paths, args.requests))
        raw = raw_count(dsn, args.requests)
        print(f"raw count(*) over {args.cases:,} cases: p50 {pct(raw, 50):.1f} ms, p99 {pct(raw, 99):.1f} ms")
        for name, samples in found.items():
            goal = goals.get(name, 50.0)
            p99 = pct(samples, 99)
            print(f"{name:32} p50 {pct(samples, 50):6.1f} ms  p99 {p99:6.1f} ms  goal p99 <= {goal:.0f} ms"
                  f"  {'ok' if p99 <= goal else 'MISSED'}")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
