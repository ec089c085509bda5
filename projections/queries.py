"""The read side: the case list, department load and jurisdiction KPIs, the projection lag."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from suqiu.domain.clocks import Clock
from suqiu.domain.enterprises import file_figures
from suqiu.domain.figures import rate
from suqiu.domain.hotspots import MAX_APPEALS, Appeal
from suqiu.domain.model import OPEN
from suqiu.domain.periods import ALL_TIME, Grain, Period
from suqiu.domain.refdata import Member
from suqiu.domain.routing import Outcome
from suqiu.projections import rows
from suqiu.projections.handling import percentiles

LIST_COLUMNS = (
    "case_id, seq, status, department, jurisdiction, category, priority, channel, title, enterprise_uscc, "
    "enterprise_name, submitted_at, assigned_at, accept_due, resolve_due, follow_up_due, next_due, warned, "
    "breached, supervised, reopen_count, closed_at, outcome, rating, source_system, source_ref"
)


def sla_state(row: dict[str, Any], now: datetime) -> str:
    if row["status"] == "suspended":
        return "paused"
    if row["next_due"] is None:
        return "none"
    if row["breached"] or row["next_due"] <= now:
        return "overdue"
    return "due_soon" if row["warned"] else "on_time"


def next_clock(row: dict[str, Any]) -> str | None:
    """The clock whose deadline is the case's next one (the one that breached, when overdue)."""
    for clock in Clock:
        if row["next_due"] is not None and row.get(clock.due_field) == row["next_due"]:
            return clock.value
    return None


# What overdue (超期) and due soon (临期) mean on a case_view row; {now} is the query's placeholder.
OVERDUE = "(next_due IS NOT NULL AND (breached OR next_due <= {now}))"
DUE_SOON = "(next_due IS NOT NULL AND NOT breached AND next_due > {now} AND (warned OR warn_at <= {now}))"
ORDERS = {"submitted": "submitted_at, case_id", "next_due": "next_due NULLS LAST, case_id"}


async def list_cases(conn: psycopg.AsyncConnection[Any], now: datetime, *, state: str | None = None,
                     department: str | None = None, overdue: bool | None = None, limit: int = 50,
                     after: str | None = None, usccs: Collection[str] | None = None, open_only: bool = False,
                     category: str | None = None, text: str | None = None, submitted: Period = ALL_TIME,
                     order: str = "submitted", departments: Collection[str] | None = None,
                     supervised: bool | None = None,
                     source_systems: Collection[str] | None = None) -> list[dict[str, Any]]:
    """Cases in submission order (or by next deadline); `after` is the last case id of the
    previous page; `departments` limits them to those held by any of them; `usccs` to those
    enterprises' cases; `source_systems` to the cases those systems submitted; `text` matches a case id, source reference or USCC exactly, or a part
    of the enterprise name or title."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if state is not None:
        where.append("status = %s")
        params.append(state)
    if open_only:
        where.append("status NOT IN ('closed', 'withdrawn')")
    if department is not None:
        where.append("department = %s")
        params.append(department)
    if departments is not None:
        where.append("department = ANY(%s)")
        params.append(list(departments))
    if supervised is not None:
        where.append("supervised = %s")
        params.append(supervised)
    if category is not None:
        where.append("category = %s")
        params.append(category)
    if usccs is not None:
        where.append("enterprise_uscc = ANY(%s)")
        params.append(list(usccs))
    if source_systems is not None:
        where.append("source_system = ANY(%s)")
        params.append(list(source_systems))
    if text:
        where.append("(case_id = %s OR source_ref = %s OR enterprise_uscc = %s OR enterprise_name LIKE %s "
                     "OR title LIKE %s)")
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params.extend([text, text, text, pattern, pattern])
    start, end = submitted.instants()
    if start is not None:
        where.append("submitted_at >= %s")
        params.append(start)
    if end is not None:
        where.append("submitted_at < %s")
        params.append(end)
    if overdue is not None:
        clause = OVERDUE.format(now="%s")
        where.append(clause if overdue else f"NOT {clause}")
        params.append(now)
    if after is not None:
        where.append("(submitted_at, case_id) > (SELECT submitted_at, case_id FROM case_view WHERE case_id = %s)")
        params.append(after)
    params.append(limit)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {LIST_COLUMNS} FROM case_view WHERE {' AND '.join(where)} "
                          f"ORDER BY {ORDERS[order]} LIMIT %s", params)
        rows = await cur.fetchall()
    for row in rows:
        row["sla_status"] = sla_state(row, now)
        row["next_clock"] = next_clock(row)
    return rows


async def enterprise_cases(conn: psycopg.AsyncConnection[Any], uscc: str) -> list[dict[str, Any]]:
    """Every case of one enterprise, newest first, with the gathering it was raised at."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {LIST_COLUMNS}, state->>'gathering' AS gathering FROM case_view "
                          "WHERE enterprise_uscc = %s ORDER BY submitted_at DESC, case_id DESC", (uscc,))
        return list(await cur.fetchall())


async def enterprise_file(conn: psycopg.AsyncConnection[Any], uscc: str, now: datetime) -> dict[str, Any] | None:
    """企业服务档案: the enterprise's cases with their SLA status, its open ones, the gatherings
    they were raised at, and its figures (suqiu.domain.enterprises); None for no cases."""
    cases = await enterprise_cases(conn, uscc)
    if not cases:
        return None
    for c in cases:
        c["sla_status"] = sla_state(c, now)
    return {"uscc": uscc, "name": cases[0]["enterprise_name"], **file_figures(cases),
            "open": [c["case_id"] for c in cases if c["status"] in OPEN],
            "gatherings": sorted({c["gathering"] for c in cases if c["gathering"]}), "appeals": cases}


async def held_by(conn: psycopg.AsyncConnection[Any], case_id: str, departments: Collection[str]) -> bool:
    """Whether any of `departments` was ever assigned the case (派单, 转办 or 重办 to it)."""
    cur = await conn.execute("SELECT 1 FROM assignments WHERE case_id = %s AND department = ANY(%s) LIMIT 1",
                             (case_id, list(departments)))
    return await cur.fetchone() is not None


async def case_known(conn: psycopg.AsyncConnection[Any], case_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM case_view WHERE case_id = %s", (case_id,))
    return await cur.fetchone() is not None


_BOUNDS = "(%(start)s::date IS NULL OR {day} >= %(start)s) AND (%(end)s::date IS NULL OR {day} < %(end)s)"
_LOCAL = "({} AT TIME ZONE 'Asia/Shanghai')::date"
# Whose facts count, and as whose: each member department from its `since` day until before its
# `until` day (refdata.members, refdata.ranked_members).
_MEMBERS = ("JOIN unnest(%(codes)s::text[], %(owners)s::text[], %(since)s::date[], %(until)s::date[]) "
            "AS m(code, owner, since, until) ON department = m.code AND (m.since IS NULL OR {day} >= m.since) "
            "AND (m.until IS NULL OR {day} < m.until)")
COUNTS_SQL = ("SELECT {key} AS key, " + ", ".join(f"sum({n})::int AS {n}" for n in rows.DAY_COUNTS)
              + " FROM department_days " + _MEMBERS.format(day="day") + " WHERE " + _BOUNDS.format(day="day")
              + " GROUP BY 1")
# The assignments made in the period still awaiting a response before their accept deadline: not due yet.
AWAITING_SQL = ("SELECT {key} AS key, count(*) FROM assignments " + _MEMBERS.format(day=_LOCAL.format("assigned_at"))
                + " WHERE responded_at IS NULL AND NOT released AND accept_due > %(now)s AND "
                + _BOUNDS.format(day=_LOCAL.format("assigned_at")) + " GROUP BY 1")
RANKED = ("response_rate", "on_time_rate", "resolution_rate", "satisfaction_rate", "reopen_rate")
LOWER_IS_BETTER = frozenset({"reopen_rate"})


def _key(group: str | Grain, day: str, department: str = "department") -> str:
    """The SQL a group of figures is keyed by: all of the period (NULL), `department` (the
    column, or the member's owner), or the first day of each month (quarter, year) of `day`."""
    if isinstance(group, Grain):
        return f"date_trunc('{group.value}', {day})::date"
    return {"all": "NULL::text", "department": department}[group]


def as_members(departments: Sequence[str | Member]) -> list[Member]:
    """Plain codes count as themselves over all their history."""
    return [d if isinstance(d, Member) else Member(d, d, None) for d in departments]


async def _period_figures(conn: psycopg.AsyncConnection[Any], departments: Sequence[str | Member], now: datetime,
                          period: Period, group: str | Grain, with_handling: bool = True) -> dict[Any, dict[str, Any]]:
    """The period figures of `departments` (codes, or members with the day they count from),
    keyed by `group`: one entry per key with any activity (without the handling-time
    percentiles unless `with_handling`). Grouped by department, a member counts as its owner."""
    members = as_members(departments)
    params = {"codes": [m.code for m in members], "owners": [m.owner for m in members],
              "since": [m.since for m in members], "until": [m.until for m in members], "now": now,
              "start": period.start, "end": period.end}
    out: dict[Any, dict[str, Any]] = {}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(COUNTS_SQL.format(key=_key(group, "day", "m.owner")), params)
        counts = {r.pop("key"): r for r in await cur.fetchall()}
    scopes: dict[tuple[date | None, date | None], dict[str, str]] = {}
    for m in members:
        scopes.setdefault((m.since, m.until), {})[m.code] = m.owner
    parts = [(owners, Period(max(filter(None, (period.start, since)), default=None),
                             min(filter(None, (period.end, until)), default=None)))
             for (since, until), owners in scopes.items()]
    parts = [(owners, p) for owners, p in parts if p.start is None or p.end is None or p.start < p.end]
    handling = await percentiles(conn, parts, lambda day: _key(group, day),
                                 by_day=group is Grain.DAY) if with_handling and parts else {}
    cur2 = await conn.execute(AWAITING_SQL.format(key=_key(group, _LOCAL.format("assigned_at"), "m.owner")), params)
    awaiting = {r[0]: int(r[1]) for r in await cur2.fetchall()}
    for key in counts.keys() | handling.keys():
        out[key] = _rates(counts.get(key) or dict.fromkeys(rows.DAY_COUNTS, 0), handling.get(key, (None, None)),
                          awaiting.get(key, 0))
    return out


def _rates(c: dict[str, int], handling: tuple[float | None, float | None], awaiting: int) -> dict[str, Any]:
    """The 三率 and the rest from a period's counts; a rate is null with no denominator."""
    due = c["assigned"] - c["released"] - awaiting  # suqiu.domain.response: what a response is owed for

    def hours(v: float | None) -> float | None:
        return None if v is None else round(v / 60, 2)

    return {
        "handling_working_hours": {"median": hours(handling[0]), "p90": hours(handling[1])},
        "response_rate": rate(c["responded_on_time"], due),
        "on_time_rate": rate(c["replied_on_time"], c["replied"]),
        "resolution_rate": rate(c["resolved"], c["handled"]),
        "satisfaction_rate": rate(c["satisfied"], c["rated"]),
        "reopen_rate": rate(c["reopened"], c["handled"]),
        "counts": {"assigned": c["assigned"], "responded_on_time": c["responded_on_time"], "response_due": due,
                   "accepted_on_time": c["accepted_on_time"], "released": c["released"],
                   "replied_on_time": c["replied_on_time"], "replied": c["replied"], "closed": c["closed"],
                   "resolved": c["resolved"], "handled": c["handled"], "satisfied": c["satisfied"],
                   "rated": c["rated"], "reopened": c["reopened"], "breached": c["breached"]},
    }


EMPTY = _rates(dict.fromkeys(rows.DAY_COUNTS, 0), (None, None), 0)


async def figures(conn: psycopg.AsyncConnection[Any], departments: Sequence[str | Member], now: datetime,
                  period: Period = ALL_TIME) -> dict[str, Any]:
    """Load now (open, due soon, overdue, today's acceptances and closures) and the performance
    figures (三率, handling time) of what happened in `period` (all time when unbounded)."""
    codes = [m.code for m in as_members(departments)]
    return {**total_load(await open_counts(conn, now, codes), codes),
            **await performance(conn, departments, now, period)}


def total_load(per_department: dict[str, dict[str, int]], departments: Sequence[str]) -> dict[str, int]:
    """The load of `departments` together, from open_counts."""
    found = [per_department[d] for d in departments if d in per_department]
    return {k: sum(d[k] for d in found) for k in ("open", "due_soon", "overdue", "accepted_today", "closed_today")}


async def performance(conn: psycopg.AsyncConnection[Any], departments: Sequence[str | Member], now: datetime,
                      period: Period) -> dict[str, Any]:
    """The performance figures (三率, handling time) of what `departments` did in `period`."""
    done = (await _period_figures(conn, departments, now, period, "all")).get(None, EMPTY)
    return {"period": period.as_dict(), **done}


async def series(conn: psycopg.AsyncConnection[Any], departments: Sequence[str | Member], now: datetime, period: Period,
                 grain: Grain, with_handling: bool = True) -> list[dict[str, Any]]:
    """The figures of each month (quarter, year) of a bounded period, in order, idle ones included."""
    found = await _period_figures(conn, departments, now, period, grain, with_handling)
    return [{"period": label, **part.as_dict(), **found.get(grain.start(part.start or date.min), EMPTY)}
            for label, part in period.split(grain)]


async def extent(conn: psycopg.AsyncConnection[Any], departments: Sequence[str | Member]) -> Period:
    """The days the figures of `departments` have any activity on (for a series with no bounds)."""
    cur = await conn.execute("SELECT min(day), max(day) FROM department_days WHERE department = ANY(%s)",
                             ([m.code for m in as_members(departments)],))
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return Period()
    return Period(row[0], row[1] + timedelta(days=1))


async def ranking(conn: psycopg.AsyncConnection[Any], departments: Sequence[str | Member], now: datetime,
                  period: Period, by: str, retired: Collection[str] = frozenset()) -> list[dict[str, Any]]:
    """The departments (the members' owners) ranked on one rate over `period`, best first; one
    with no denominator is unranked and last. Equal rates share a rank (1, 2, 2, 4). A `retired`
    department is listed only when it had facts in the period."""
    found = await _period_figures(conn, departments, now, period, "department")
    owners = sorted({m.owner for m in as_members(departments)} - (set(retired) - found.keys()))
    entries = [{"department": d, **found.get(d, EMPTY)} for d in owners]
    sign = 1 if by in LOWER_IS_BETTER else -1
    entries.sort(key=lambda x: (x[by] is None, sign * (x[by] or 0), x["department"]))
    previous: tuple[int, float | None] = (0, None)
    for i, entry in enumerate(entries, 1):
        if entry[by] is None:
            entry["rank"] = None
            continue
        rank = previous[0] if entry[by] == previous[1] else i
        entry["rank"] = rank
        previous = (rank, entry[by])
    return entries


async def categories(conn: psycopg.AsyncConnection[Any], jurisdictions: Collection[str], period: Period,
                     now: datetime) -> dict[str, dict[str, int]]:
    """Per category, the appeals of `jurisdictions` submitted in `period` (受理), those of them
    closed by `now`, and those overdue now: what a 通报's category sheet counts."""
    start, end = period.instants()
    cur = await conn.execute(
        "SELECT category, count(*), count(*) FILTER (WHERE status IN ('closed', 'withdrawn')), "
        f"count(*) FILTER (WHERE status NOT IN ('closed', 'withdrawn') AND {OVERDUE.format(now='%s')}) "
        "FROM case_view WHERE jurisdiction = ANY(%s) AND submitted_at >= %s AND submitted_at < %s GROUP BY 1",
        (now, list(jurisdictions), start, end))
    return {r[0]: {"submitted": int(r[1]), "closed": int(r[2]), "overdue": int(r[3])} for r in await cur.fetchall()}


# Each suggestion with the first dispatch after it and the department holding the case once replied.
_ROUTING_OUTCOMES = (
    "SELECT to_char(s.occurred_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM'), "
    "ARRAY(SELECT d->>'code' FROM jsonb_array_elements(s.data->'departments') d), "
    "(SELECT t.data->>'department' FROM case_timeline t WHERE t.case_id = s.case_id AND t.seq > s.seq "
    " AND t.event_type = 'AppealDispatched' ORDER BY t.seq LIMIT 1), "
    "CASE WHEN v.state->>'replied_at' IS NOT NULL THEN v.department END "
    "FROM case_timeline s JOIN case_view v ON v.case_id = s.case_id WHERE s.event_type = 'RoutingSuggested' "
    "AND (%(start)s::timestamptz IS NULL OR s.occurred_at >= %(start)s) "
    "AND (%(end)s::timestamptz IS NULL OR s.occurred_at < %(end)s)")


async def main_case(conn: psycopg.AsyncConnection[Any], case_id: str) -> dict[str, Any] | None:
    """The progress of a main case (并件) as its duplicates' readers see it: state, department,
    deadline and its latest reply, without its enterprise or contact."""
    cur = await conn.execute(
        "SELECT v.case_id, v.status, v.department, v.resolve_due, (v.state->>'replied_at')::timestamptz, "
        "v.closed_at, (SELECT t.data->>'content' FROM case_timeline t WHERE t.case_id = v.case_id AND t.event_type "
        "IN ('AppealReplied', 'UpperLevelReplied') ORDER BY t.seq DESC LIMIT 1) FROM case_view v WHERE v.case_id = %s",
        (case_id,))
    row = await cur.fetchone()
    names = ("case_id", "status", "department", "resolve_due", "replied_at", "closed_at", "reply")
    return None if row is None else dict(zip(names, row, strict=True))


async def window_appeals(conn: psycopg.AsyncConnection[Any], jurisdictions: Collection[str], start: datetime,
                         end: datetime) -> list[Appeal]:
    """The appeals of `jurisdictions` submitted in [start, end), newest first (at most MAX_APPEALS),
    with their text as submitted: what hot issues are grouped from (热点)."""
    cur = await conn.execute(
        "SELECT v.case_id, v.submitted_at, v.enterprise_uscc, v.department, v.category, "
        "coalesce(t.data->>'title', ''), coalesce(t.data->>'content', ''), v.source_ref FROM case_view v "
        "JOIN case_timeline t ON t.case_id = v.case_id AND t.seq = 1 WHERE v.jurisdiction = ANY(%s) "
        "AND v.submitted_at >= %s AND v.submitted_at < %s ORDER BY v.submitted_at DESC LIMIT %s",
        (list(jurisdictions), start, end, MAX_APPEALS))
    return [Appeal(*row) for row in await cur.fetchall()]


async def routing_outcomes(conn: psycopg.AsyncConnection[Any], start: datetime | None,
                           end: datetime | None) -> list[Outcome]:
    """What became of each routing suggestion made in [start, end) (智能分拨的效果; None: unbounded)."""
    cur = await conn.execute(_ROUTING_OUTCOMES, {"start": start, "end": end})
    return [Outcome(r[0], tuple(r[1]), r[2], r[3]) for r in await cur.fetchall()]


async def open_counts(conn: psycopg.AsyncConnection[Any], now: datetime,
                      departments: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """Per department (all, or `departments`): open, due soon, overdue, supervised (督办), and
    today's acceptances and closures (what a dispatcher balances on)."""
    params = {"now": now, "today": rows.day_of(now), "departments": None if departments is None else list(departments)}
    only = "(%(departments)s::text[] IS NULL OR department = ANY(%(departments)s))"
    cur = await conn.execute(
        f"SELECT department, count(*), count(*) FILTER (WHERE {DUE_SOON.format(now='%(now)s')}), "
        f"count(*) FILTER (WHERE {OVERDUE.format(now='%(now)s')}), count(*) FILTER (WHERE supervised) "
        f"FROM case_view WHERE department IS NOT NULL AND status NOT IN ('closed', 'withdrawn') AND {only} "
        "GROUP BY department", params)
    out = {r[0]: {"open": r[1], "due_soon": r[2], "overdue": r[3], "supervised": r[4], "accepted_today": 0,
                  "closed_today": 0} for r in await cur.fetchall()}
    cur = await conn.execute(f"SELECT department, acceptances, closed FROM department_days WHERE day = %(today)s "
                             f"AND {only}", params)
    for department, accepted, closed in await cur.fetchall():
        entry = out.setdefault(department, dict(EMPTY_LOAD))
        entry["accepted_today"], entry["closed_today"] = accepted, closed
    return out


EMPTY_LOAD = {"open": 0, "due_soon": 0, "overdue": 0, "supervised": 0, "accepted_today": 0, "closed_today": 0}


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


TIMER_OVERDUE_AFTER = timedelta(minutes=1)


async def operations(conn: psycopg.AsyncConnection[Any], topic: str, partitions: int, now: datetime
                     ) -> tuple[dict[str, Any], dict[int, int]]:
    """The store-wide figures an operator watches (suqiu.base.metrics), and the read models' lag per partition.

    Each is an index probe or a small table: the timers are counted per partition, which the
    (partition, fire_at) index answers without reading the timers still to come.
    """
    every = list(range(partitions))
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM outbox), "
        "(SELECT recorded_at FROM events WHERE position = (SELECT min(position) FROM outbox)), "
        "(SELECT count(*) FROM quarantined_cases), "
        "(SELECT count(*) FROM sla_timers WHERE partition = ANY(%(p)s) AND fire_at <= %(now)s), "
        "(SELECT count(*) FROM sla_timers WHERE partition = ANY(%(p)s) AND fire_at <= %(late)s), "
        "(SELECT count(*) FROM dead_letters)",
        {"p": every, "now": now, "late": now - TIMER_OVERDUE_AFTER}, prepare=True)
    row = await cur.fetchone()
    assert row is not None
    oldest = row[1]
    gauges = {"outbox": row[0], "outbox_age_seconds": max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
              "quarantined": row[2], "timers_due": row[3], "timers_overdue": row[4], "dead_letters_stored": row[5]}
    cur = await conn.execute(
        'SELECT r.partition, greatest(r."offset" - coalesce(p."offset", -1), 0) FROM relay_offsets r '
        "LEFT JOIN projection_offsets p ON p.topic = r.topic AND p.partition = r.partition "
        "AND p.projection = 'read-models' WHERE r.topic = %s", (topic,), prepare=True)
    return gauges, {int(p): int(lag) for p, lag in await cur.fetchall()}
