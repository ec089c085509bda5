"""What each event means for the read models: rows built from the case before and after it."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from suqiu.domain import events as e
from suqiu.domain.clocks import Timer, running_clocks
from suqiu.domain.model import HANDLED, SATISFIED, Case, field_names
from suqiu.domain.personal import labelled
from suqiu.domain.response import AssignmentEnd, Ending, assignment_end
from suqiu.domain.sla import CHINA, SlaPolicy
from suqiu.schemas.codec import to_json_text


@dataclass(frozen=True, slots=True)
class Assigned:
    """派单/转办/重办: a department got the case (for the response rate)."""

    case_id: str
    seq: int
    department: str
    assigned_at: datetime
    accept_due: datetime


@dataclass(frozen=True, slots=True)
class Accepted:
    """签收: the case's latest assignment was accepted."""

    case_id: str
    at: datetime
    department: str
    assigned_at: datetime
    accept_due: datetime


@dataclass(frozen=True, slots=True)
class Ended:
    """响应 or release: how the case's latest assignment stopped awaiting its response."""

    case_id: str
    end: AssignmentEnd


@dataclass(frozen=True, slots=True)
class Replied:
    """答复: a reply, counted when it is given (handling time, on-time)."""

    case_id: str
    seq: int
    department: str
    replied_at: datetime
    resolve_due: datetime | None
    handling_minutes: float | None


@dataclass(frozen=True, slots=True)
class Closed:
    """办结: one closure cycle (on-time, resolution, handling time)."""

    case_id: str
    cycle: int
    department: str | None
    closed_at: datetime
    outcome: str
    replied_at: datetime | None
    resolve_due: datetime | None
    handling_minutes: float | None


@dataclass(frozen=True, slots=True)
class Rated:
    """评价: the enterprise's rating of a closure."""

    case_id: str
    cycle: int
    rating: str
    department: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Reopened:
    """重办: the closure of `cycle` did not hold."""

    case_id: str
    cycle: int
    department: str | None
    outcome: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Breached:
    """超期: a clock passed its deadline while the department held the case."""

    department: str
    due_at: datetime


Fact = Assigned | Accepted | Ended | Replied | Closed | Rated | Reopened | Breached
DAY_COUNTS = ("assigned", "accepted", "accepted_on_time", "acceptances", "replied", "replied_on_time", "closed",
              "resolved", "handled", "reopened", "rated", "satisfied", "breached", "responded_on_time", "released")
ASSIGNMENT_COLUMNS = (("case_id", "text"), ("seq", "int"), ("department", "text"), ("assigned_at", "timestamptz"),
                      ("accept_due", "timestamptz"), ("accepted_at", "timestamptz"), ("responded_at", "timestamptz"),
                      ("released", "bool"))
REPLY_COLUMNS = (("case_id", "text"), ("seq", "int"), ("department", "text"), ("replied_at", "timestamptz"),
                 ("resolve_due", "timestamptz"), ("handling_minutes", "float8"))
DAY_COLUMNS = (("department", "text"), ("day", "date"), *((name, "int") for name in DAY_COUNTS))
CLOSURE_COLUMNS = (("case_id", "text"), ("cycle", "int"), ("department", "text"), ("closed_at", "timestamptz"),
                   ("outcome", "text"), ("replied_at", "timestamptz"), ("resolve_due", "timestamptz"),
                   ("handling_minutes", "float8"), ("rating", "text"), ("reopened", "bool"))


def _unnest(*types: str) -> str:
    return "unnest(" + ", ".join(f"%b::{t}[]" for t in types) + ")"


# Rows are found by one index probe per key and updated by ctid: with a hash join, PostgreSQL
# scanned the whole table for each batch (see BENCHMARKS.md).
_CLOSURE_OF_U = ("CROSS JOIN LATERAL (SELECT ctid FROM closures WHERE closures.case_id = u.case_id "
                 "AND closures.cycle = u.cycle OFFSET 0) AS x")


# What a reply's row in handling_months is keyed by (see migration 012).
HANDLING_MONTH_KEY = ("department, date_trunc('month', replied_at AT TIME ZONE 'Asia/Shanghai')::date, "
                      "handling_bucket(handling_minutes)")

# The live projector's way: one idempotent statement per kind of fact, for many cases at once.
# Each takes one array per field of its fact, in field order, with at most one fact per case.
FACT_SQL: dict[type[Fact], str] = {
    Assigned: "INSERT INTO assignments (case_id, seq, department, assigned_at, accept_due) "
              f"SELECT * FROM {_unnest('text', 'int', 'text', 'timestamptz', 'timestamptz')} ON CONFLICT DO NOTHING",
    # The current assignment is the latest: a case's facts are applied in its event order.
    Accepted: "UPDATE assignments a SET accepted_at = r.at FROM (SELECT u.at, x.ctid FROM "
              f"{_unnest('text', 'timestamptz')} AS u(case_id, at) CROSS JOIN LATERAL (SELECT ctid FROM assignments "
              "WHERE assignments.case_id = u.case_id ORDER BY seq DESC LIMIT 1) AS x) AS r WHERE a.ctid = r.ctid",
    Ended: "UPDATE assignments a SET responded_at = CASE WHEN r.released THEN a.responded_at ELSE r.at END, "
           "released = a.released OR r.released FROM (SELECT u.at, u.released, x.ctid FROM "
           f"{_unnest('text', 'timestamptz', 'bool')} AS u(case_id, at, released) CROSS JOIN LATERAL (SELECT ctid "
           "FROM assignments WHERE assignments.case_id = u.case_id ORDER BY seq DESC LIMIT 1) AS x) AS r "
           "WHERE a.ctid = r.ctid",
    # A reply counts in its month's handling-time buckets once: only the rows this statement adds.
    Replied: "WITH added AS (INSERT INTO replies (case_id, seq, department, replied_at, resolve_due, handling_minutes) "
             f"SELECT * FROM {_unnest('text', 'int', 'text', 'timestamptz', 'timestamptz', 'float8')} "
             "ON CONFLICT DO NOTHING RETURNING department, replied_at, handling_minutes) "
             "INSERT INTO handling_months (department, month, bucket, replies) "
             f"SELECT {HANDLING_MONTH_KEY}, count(*) FROM added WHERE handling_minutes IS NOT NULL "
             "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
             "ON CONFLICT (department, month, bucket) DO UPDATE SET replies = handling_months.replies + EXCLUDED.replies",
    Closed: "INSERT INTO closures (case_id, cycle, department, closed_at, outcome, replied_at, resolve_due, "
            "handling_minutes) SELECT * FROM "
            f"{_unnest('text', 'int', 'text', 'timestamptz', 'text', 'timestamptz', 'timestamptz', 'float8')} "
            "ON CONFLICT DO NOTHING",
    Rated: f"UPDATE closures c SET rating = r.rating FROM (SELECT u.rating, x.ctid FROM "
           f"{_unnest('text', 'int', 'text')} AS u(case_id, cycle, rating) {_CLOSURE_OF_U}) AS r WHERE c.ctid = r.ctid",
    Reopened: "UPDATE closures SET reopened = true WHERE ctid = ANY(ARRAY(SELECT x.ctid FROM "
              f"{_unnest('text', 'int')} AS u(case_id, cycle) {_CLOSURE_OF_U}))",
}
# The fields each statement takes, in its order: the facts carry more, for their tallies.
FACT_FIELDS: dict[type[Fact], tuple[str, ...]] = {
    Assigned: field_names(Assigned), Accepted: ("case_id", "at"), Ended: ("case_id", "end.at", "end.released"),
    Replied: field_names(Replied),
    Closed: field_names(Closed), Rated: ("case_id", "cycle", "rating"), Reopened: ("case_id", "cycle")}
FACT_VALUES: dict[type[Fact], Callable[[Fact], tuple[Any, ...]]] = {
    kind: operator.attrgetter(*names) for kind, names in FACT_FIELDS.items()}
# Adds a batch's tallies to the days: one row per (department, day), the counts in DAY_COUNTS order.
ADD_DAYS = ("INSERT INTO department_days (department, day, " + ", ".join(DAY_COUNTS) + ") SELECT * FROM "
            + _unnest("text", "date", *("int" for _ in DAY_COUNTS)) + " ON CONFLICT (department, day) DO UPDATE SET "
            + ", ".join(f"{n} = department_days.{n} + EXCLUDED.{n}" for n in DAY_COUNTS))


def day_of(at: datetime) -> date:
    """The Asia/Shanghai day an instant falls on: the day the figures count it in."""
    return at.astimezone(CHINA).date()


def tallies(fact: Fact) -> list[tuple[str, date, str]]:
    """What `fact` adds to the daily figures: (department, day, count), one each.

    These are the definitions behind the period figures (三率): an assignment counts on the day
    it was made, with its acceptance on time or late; a reply on the day it was given, on time
    when by the resolve deadline; a closure, a rating and a reopening on their own day.
    """
    match fact:
        case Assigned():
            return [(fact.department, day_of(fact.assigned_at), "assigned")]
        case Accepted():
            made = day_of(fact.assigned_at)
            out = [(fact.department, made, "accepted"), (fact.department, day_of(fact.at), "acceptances")]
            if fact.at <= fact.accept_due:
                out.append((fact.department, made, "accepted_on_time"))
            return out
        case Ended():
            made = day_of(fact.end.assigned_at)
            if fact.end.ending is Ending.RELEASED:
                return [(fact.end.department, made, "released")]
            return [(fact.end.department, made, "responded_on_time")] if fact.end.on_time else []
        case Replied():
            day = day_of(fact.replied_at)
            out = [(fact.department, day, "replied")]
            if fact.resolve_due is not None and fact.replied_at <= fact.resolve_due:
                out.append((fact.department, day, "replied_on_time"))
            return out
        case Closed() if fact.department is not None:
            day = day_of(fact.closed_at)
            out = [(fact.department, day, "closed")]
            if fact.outcome in HANDLED:
                out.append((fact.department, day, "handled"))
            if fact.outcome == "resolved":
                out.append((fact.department, day, "resolved"))
            return out
        case Rated() if fact.department is not None:
            day = day_of(fact.at)
            out = [(fact.department, day, "rated")]
            if fact.rating in SATISFIED:
                out.append((fact.department, day, "satisfied"))
            return out
        case Reopened() if fact.department is not None and fact.outcome in HANDLED:
            return [(fact.department, day_of(fact.at), "reopened")]
        case Breached():
            return [(fact.department, day_of(fact.due_at), "breached")]
    return []


def day_rows(facts: Iterable[Fact]) -> list[tuple[Any, ...]]:
    """The tallies of `facts` summed per (department, day), as department_days rows."""
    counts: dict[tuple[str, date], list[int]] = {}
    index = {name: i for i, name in enumerate(DAY_COUNTS)}
    for fact in facts:
        for department, day, name in tallies(fact):
            counts.setdefault((department, day), [0] * len(DAY_COUNTS))[index[name]] += 1
    return [(department, day, *values) for (department, day), values in counts.items()]


def fold(facts: list[Fact]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """One case's facts, in event order, as its final assignment, closure and reply rows (a rebuild's way).

    Gives the rows FACT_SQL would leave behind, without a round trip per fact.
    """
    assignments: dict[int, list[Any]] = {}
    closures: dict[int, list[Any]] = {}
    replies: dict[int, tuple[Any, ...]] = {}
    for fact in facts:
        match fact:
            case Assigned():
                assignments.setdefault(fact.seq, [fact.case_id, fact.seq, fact.department, fact.assigned_at,
                                                  fact.accept_due, None, None, False])
            case Accepted():
                if assignments:
                    assignments[max(assignments)][5] = fact.at
            case Ended():
                if assignments:
                    latest = assignments[max(assignments)]
                    if fact.end.released:
                        latest[7] = True
                    else:
                        latest[6] = fact.end.at
            case Replied():
                replies.setdefault(fact.seq, FACT_VALUES[Replied](fact))
            case Closed():
                closures.setdefault(fact.cycle, [fact.case_id, fact.cycle, fact.department, fact.closed_at,
                                                 fact.outcome, fact.replied_at, fact.resolve_due,
                                                 fact.handling_minutes, None, False])
            case Rated():
                if fact.cycle in closures:
                    closures[fact.cycle][8] = fact.rating
            case Reopened():
                if fact.cycle in closures:
                    closures[fact.cycle][9] = True
    return [tuple(r) for r in assignments.values()], [tuple(r) for r in closures.values()], list(replies.values())


def storable_json(text: str) -> str:
    """JSON text PostgreSQL's jsonb takes: it refuses the NUL escape, which events stored before the
    input rules (suqiu.domain.inputs) may hold; the event store keeps the bytes as they were."""
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


def _storable(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


def timeline_row(ev: e.Event) -> tuple[Any, ...]:
    data = storable_json(to_json_text(ev.payload))
    return (ev.case_id, ev.seq, ev.event_id, ev.event_type, ev.occurred_at, ev.actor.system,
            ev.actor.role.value, ev.actor.department, ev.actor.person, data)


def case_row(case: Case, timers: list[Timer], state: str, now: datetime) -> tuple[Any, ...]:
    """The case_view row; `timers` are the case's pending_timers (the caller stores them too)."""
    clocks = running_clocks(case)
    warns = [t.fire_at for t in timers if t.kind == "warning"]
    marks = {kind for clock, kind in case.sla_marks if clock in clocks}
    ent = case.enterprise
    return (
        case.case_id, case.seq, case.status.value, case.department, case.jurisdiction, case.category,
        case.priority, case.channel, _storable(labelled(case.title)), _storable(ent.uscc) if ent else "",
        _storable(ent.name) if ent else "",
        case.submitted_at, case.assigned_at, case.accept_due, case.resolve_due, case.follow_up_due,
        min(clocks.values(), default=None), min(warns, default=None), "warning" in marks,
        "breach" in marks, case.supervised, case.reopen_count, case.closed_at, case.outcome, case.rating,
        storable_json(state), now, min((d.since for d in case.provisional), default=None) if case.is_open else None,
        _storable(case.source_system), _storable(case.source_ref),
    )


def facts(before: Case, ev: e.Event, after: Case, policy: SlaPolicy) -> list[Fact]:
    """Assignments (for the response rate) and closures (on-time, resolution, satisfaction, reopen)."""
    ended = assignment_end(before, ev)
    # First: a transfer's new assignment must not be the one the end is written to.
    first: list[Fact] = [Ended(ev.case_id, ended)] if ended is not None else []
    return first + _facts(before, ev, after, policy)


def _facts(before: Case, ev: e.Event, after: Case, policy: SlaPolicy) -> list[Fact]:
    p, at = ev.payload, ev.occurred_at
    match p:
        case e.AppealDispatched() | e.AppealTransferred() | e.AppealReopened():
            assert after.department is not None and after.accept_due is not None
            out: list[Fact] = [Assigned(ev.case_id, ev.seq, after.department, at, after.accept_due)]
            if isinstance(p, e.AppealReopened):
                out.append(Reopened(ev.case_id, before.reopen_count, before.department, before.outcome, at))
            return out
        case e.AppealAccepted():
            assert before.department is not None and before.assigned_at is not None and before.accept_due is not None
            return [Accepted(ev.case_id, at, before.department, before.assigned_at, before.accept_due)]
        case e.AppealReplied():
            handling = _handling(before, at, policy)
            return [Replied(ev.case_id, ev.seq, p.department, at, before.resolve_due, handling)]
        case e.AppealClosed():
            handling = None if before.replied_at is None else _handling(before, before.replied_at, policy)
            return [Closed(ev.case_id, before.reopen_count, before.department, at, p.outcome, before.replied_at,
                           before.resolve_due, handling)]
        case e.SlaBreached() if before.department is not None:
            return [Breached(before.department, p.due_at)]
        case e.FeedbackReceived():
            return [Rated(ev.case_id, before.reopen_count, p.rating, before.department, at)]
    return []


def _handling(before: Case, replied_at: datetime, policy: SlaPolicy) -> float | None:
    """Working minutes from the assignment to the reply (办理时长)."""
    if before.assigned_at is None:
        return None
    return policy.working_minutes(policy.goal(before.category, before.priority), before.assigned_at, replied_at)
