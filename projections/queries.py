"""The read side: the case list, department load and jurisdiction KPIs, the projection lag."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from suqiu.domain.sla import CHINA

LIST_COLUMNS = (
    "case_id, seq, status, department, jurisdiction, category, priority, channel, title, enterprise_uscc, "
    "enterprise_name, submitted_at, assigned_at, accept_due, resolve_due, follow_up_due, next_due, warned, "
    "breached, supervised, reopen_count, closed_at, outcome, rating"
)


def day_start(now: datetime) -> datetime:
    """Midnight in Asia/Shanghai of the day `now` falls on: "today" for the figures."""
    return datetime.combine(now.astimezone(CHINA).date(), time(), CHINA)


def sla_state(row: dict[str, Any], now: datetime) -> str:
    if row["status"] == "suspended":
        return "paused"
    if row["next_due"] is None:
        return "none"
    if row["breached"] or row["next_due"] <= now:
        return "overdue"
    return "due_soon" if row["warned"] else "on_time"


async def list_cases(conn: psycopg.AsyncConnection[Any], now: datetime, *, state: str | None = None,
                     department: str | None = None, overdue: bool | None = None, limit: int = 50,
                     after: str | None = None, usccs: Collection[str] | None = None) -> list[dict[str, Any]]:
    """Cases in submission order; `after` is the last case id of the previous page; `usccs`
    limits them to those enterprises' cases."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if state is not None:
        where.append("status = %s")
        params.append(state)
    if department is not None:
        where.append("department = %s")
        params.append(department)
    if usccs is not None:
        where.append("enterprise_uscc = ANY(%s)")
        params.append(list(usccs))
    if overdue is not None:
        clause = "(next_due IS NOT NULL AND (breached OR next_due <= %s))"
        where.append(clause if overdue else f"NOT {clause}")
        params.append(now)
    if after is not None:
        where.append("(submitted_at, case_id) > (SELECT submitted_at, case_id FROM case_view WHERE case_id = %s)")
        params.append(after)
    params.append(limit)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {LIST_COLUMNS} FROM case_view WHERE {' AND '.join(where)} "
                          "ORDER BY submitted_at, case_id LIMIT %s", params)
        rows = await cur.fetchall()
    for row in rows:
        row["sla_status"] = sla_state(row, now)
    return rows


async def held_by(conn: psycopg.AsyncConnection[Any], case_id: str, department: str | None) -> bool:
    """Whether `department` was ever assigned the case (派单, 转办 or 重办 to it)."""
    cur = await conn.execute("SELECT 1 FROM assignments WHERE case_id = %s AND department = %s LIMIT 1",
                             (case_id, department))
    return await cur.fetchone() is not None


async def case_known(conn: psycopg.AsyncConnection[Any], case_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM case_view WHERE case_id = %s", (case_id,))
    return await cur.fetchone() is not None


LOAD_SQL = """
WITH open AS (
    SELECT count(*) AS open,
           count(*) FILTER (WHERE next_due IS NOT NULL AND (breached OR next_due <= %(now)s)) AS overdue,
           count(*) FILTER (WHERE next_due IS NOT NULL AND NOT breached AND next_due > %(now)s
                            AND (warned OR warn_at <= %(now)s)) AS due_soon
    FROM case_view WHERE department = ANY(%(departments)s) AND status NOT IN ('closed', 'withdrawn')
), a AS (
    SELECT count(*) FILTER (WHERE accepted_at >= %(today)s) AS accepted_today,
           count(*) FILTER (WHERE accepted_at IS NOT NULL AND accepted_at <= accept_due) AS responded_on_time,
           count(*) FILTER (WHERE accepted_at IS NOT NULL OR accept_due <= %(now)s) AS response_due
    FROM assignments WHERE department = ANY(%(departments)s)
), c AS (
    SELECT count(*) FILTER (WHERE closed_at >= %(today)s) AS closed_today,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY handling_minutes) AS median_minutes,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY handling_minutes) AS p90_minutes,
           count(*) FILTER (WHERE replied_at IS NOT NULL AND replied_at <= resolve_due) AS replied_on_time,
           count(*) FILTER (WHERE replied_at IS NOT NULL) AS replied,
           count(*) FILTER (WHERE outcome = 'resolved') AS resolved,
           count(*) FILTER (WHERE outcome IN ('resolved', 'explained', 'unresolvable')) AS handled,
           count(*) FILTER (WHERE rating IN ('satisfied', 'basically_satisfied')) AS satisfied,
           count(*) FILTER (WHERE rating IS NOT NULL) AS rated,
           count(*) FILTER (WHERE reopened AND outcome IN ('resolved', 'explained', 'unresolvable')) AS reopened
    FROM closures WHERE department = ANY(%(departments)s)
)
SELECT * FROM open, a, c
"""


async def figures(conn: psycopg.AsyncConnection[Any], departments: Sequence[str], now: datetime) -> dict[str, Any]:
    """Load and performance (三率 and more) over `departments`; rates are null with no denominator."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(LOAD_SQL, {"departments": list(departments), "now": now, "today": day_start(now)})
        r = await cur.fetchone()
    assert r is not None

    def rate(num: str, den: str) -> float | None:
        return round(r[num] / r[den], 4) if r[den] else None

    def hours(v: float | None) -> float | None:
        return None if v is None else round(v / 60, 2)

    return {
        "open": r["open"], "due_soon": r["due_soon"], "overdue": r["overdue"],
        "accepted_today": r["accepted_today"], "closed_today": r["closed_today"],
        "handling_working_hours": {"median": hours(r["median_minutes"]), "p90": hours(r["p90_minutes"])},
        "response_rate": rate("responded_on_time", "response_due"),
        "on_time_rate": rate("replied_on_time", "replied"),
        "resolution_rate": rate("resolved", "handled"),
        "satisfaction_rate": rate("satisfied", "rated"),
        "reopen_rate": rate("reopened", "handled"),
        "counts": {k: r[k] for k in ("responded_on_time", "response_due", "replied_on_time", "replied", "resolved",
                                     "handled", "satisfied", "rated", "reopened")},
    }


async def open_counts(conn: psycopg.AsyncConnection[Any], now: datetime) -> dict[str, dict[str, int]]:
    """Per department: open, due soon, overdue (what a dispatcher balances on)."""
    cur = await conn.execute(
        "SELECT department, count(*), "
        "count(*) FILTER (WHERE next_due IS NOT NULL AND NOT breached AND next_due > %(now)s "
        "AND (warned OR warn_at <= %(now)s)), "
        "count(*) FILTER (WHERE next_due IS NOT NULL AND (breached OR next_due <= %(now)s)) "
        "FROM case_view WHERE department IS NOT NULL AND status NOT IN ('closed', 'withdrawn') "
        "GROUP BY department", {"now": now})
    return {r[0]: {"open": r[1], "due_soon": r[2], "overdue": r[3]} for r in await cur.fetchall()}


async def quarantined(conn: psycopg.AsyncConnection[Any], limit: int = 20) -> dict[str, Any]:
    """Cases the read models hold back (their events could not be stored): how many, and the first."""
    cur = await conn.execute("SELECT case_id, seq, error, since, count(*) OVER () FROM quarantined_cases "
                             "ORDER BY since, case_id LIMIT %s", (limit,))
    rows = await cur.fetchall()
    return {"cases": int(rows[0][4]) if rows else 0,
            "first": [{"case_id": r[0], "seq": r[1], "error": r[2], "since": r[3]} for r in rows]}


async def lag(conn: psycopg.AsyncConnection[Any], topic: str) -> dict[str, Any]:
    """Events not yet in the read models: the outbox backlog plus relay head minus checkpoint."""
    cur = await conn.execute(
        'SELECT coalesce(sum(greatest(r."offset" - coalesce(p."offset", -1), 0)), 0), '
        "(SELECT count(*) FROM outbox), (SELECT max(updated_at) FROM projection_offsets WHERE topic = %s) "
        "FROM relay_offsets r LEFT JOIN projection_offsets p "
        "ON p.topic = r.topic AND p.partition = r.partition AND p.projection = 'read-models' "
        "WHERE r.topic = %s", (topic, topic))
    row = await cur.fetchone()
    assert row is not None
    on_topic, outbox, checkpoint_at = int(row[0]), int(row[1]), row[2]
    return {"events": on_topic + outbox, "on_topic": on_topic, "outbox": outbox, "checkpoint_at": checkpoint_at}
