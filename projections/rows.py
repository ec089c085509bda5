"""What each event means for the read models: rows built from the case before and after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.codec import to_json_value
from suqiu.domain import events as e
from suqiu.domain.clocks import Timer, running_clocks
from suqiu.domain.model import Case, plain
from suqiu.domain.sla import SlaPolicy


@dataclass(frozen=True, slots=True)
class Fact:
    """One idempotent change to the facts behind the department figures: (sql, params)."""

    sql: str
    params: tuple[Any, ...]


def timeline_row(ev: e.Event) -> tuple[Any, ...]:
    data = to_json_value(plain(ev.payload))
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
        case.priority, case.channel, case.title, ent.uscc if ent else "", ent.name if ent else "",
        case.submitted_at, case.assigned_at, case.accept_due, case.resolve_due, case.follow_up_due,
        min(clocks.values(), default=None), min(warns, default=None), "warning" in marks,
        "breach" in marks, case.supervised, case.reopen_count, case.closed_at, case.outcome, case.rating,
        state, now,
    )


def facts(before: Case, ev: e.Event, after: Case, policy: SlaPolicy) -> list[Fact]:
    """Assignments (for the response rate) and closures (on-time, resolution, satisfaction, reopen)."""
    p, at = ev.payload, ev.occurred_at
    match p:
        case e.AppealDispatched() | e.AppealTransferred() | e.AppealReopened():
            assert after.department is not None and after.accept_due is not None
            out = [Fact("INSERT INTO assignments (case_id, seq, department, assigned_at, accept_due) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (ev.case_id, ev.seq, after.department, at, after.accept_due))]
            if isinstance(p, e.AppealReopened):
                out.append(Fact("UPDATE closures SET reopened = true WHERE case_id = %s AND cycle = %s",
                                (ev.case_id, before.reopen_count)))
            return out
        case e.AppealAccepted():
            # The current assignment is the latest: facts are applied in each case's event order.
            return [Fact("UPDATE assignments SET accepted_at = %s WHERE case_id = %s AND seq = "
                         "(SELECT max(seq) FROM assignments WHERE case_id = %s)", (at, ev.case_id, ev.case_id))]
        case e.AppealClosed():
            handling = None
            if before.replied_at is not None and before.assigned_at is not None:
                goal = policy.goal(before.category, before.priority)
                handling = policy.working_minutes(goal, before.assigned_at, before.replied_at)
            return [Fact(
                "INSERT INTO closures (case_id, cycle, department, closed_at, outcome, replied_at, resolve_due, "
                "handling_minutes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (ev.case_id, before.reopen_count, before.department, at, p.outcome, before.replied_at,
                 before.resolve_due, handling),
            )]
        case e.FeedbackReceived():
            return [Fact("UPDATE closures SET rating = %s WHERE case_id = %s AND cycle = %s",
                         (p.rating, ev.case_id, before.reopen_count))]
    return []
