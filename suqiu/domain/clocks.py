"""Which SLA clocks run for a case, which timers they need, and the case's SLA status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from suqiu.domain import events as e
from suqiu.domain.model import Case, Status
from suqiu.domain.sla import SlaPolicy

S = Status


class Clock(StrEnum):
    """An SLA clock (时限): accept (签收), resolve (办结) or follow-up (回访)."""

    ACCEPT = "accept"
    RESOLVE = "resolve"
    FOLLOW_UP = "follow_up"

    @property
    def runs_in(self) -> frozenset[Status]:
        """The states in which this clock runs: its warning, breach and supervision fall due."""
        return _RUNS_IN[self]

    @property
    def moves_in(self) -> frozenset[Status]:
        """The states in which a policy change or a calendar revision moves its deadline: where
        it runs, and where it is paused (挂起) and will run again."""
        return _MOVES_IN[self]

    @property
    def due_field(self) -> str:
        """The field of the case, and of the events that set it, holding this clock's deadline."""
        return _DUE_FIELDS[self]

    def due(self, case: Case | e.EventPayload) -> datetime | None:
        due: datetime | None = getattr(case, _DUE_FIELDS[self], None)
        return due


# Looked up for every event decided and folded, so the names are built once.
_DUE_FIELDS = {c: f"{c.value}_due" for c in Clock}
_CLOCK_FIELDS = tuple((c.value, field) for c, field in _DUE_FIELDS.items())
_RUNS_IN = {Clock.ACCEPT: frozenset({S.DISPATCHED}), Clock.RESOLVE: frozenset({S.DISPATCHED, S.ACCEPTED, S.RETURNED}),
            Clock.FOLLOW_UP: frozenset({S.REPLIED})}
_MOVES_IN = {**_RUNS_IN, Clock.RESOLVE: _RUNS_IN[Clock.RESOLVE] | {S.SUSPENDED}}
# The states with a clock that a policy change or a calendar revision may move.
CLOCK_STATES = frozenset().union(*_MOVES_IN.values())


@dataclass(frozen=True, slots=True)
class Timer:
    """One SLA event a clock still owes: warning (临期预警), breach (超期) or supervision (督办)."""

    clock: str
    kind: str
    fire_at: datetime
    due_at: datetime


def running_clocks(case: Case) -> dict[str, datetime]:
    """clock name -> due instant, for the clocks now running.

    Suspended (挂起) pauses every clock; escalated (上报) cases run on the upper level's clock.
    """
    clocks: dict[str, datetime] = {}
    for clock in Clock:
        due = clock.due(case)
        if due is not None and case.status in clock.runs_in:
            clocks[clock.value] = due
    return clocks


# Events that move a clock's existing deadline rather than place a new one.
_MOVES = (e.MaterialsSupplied, e.ExtensionGranted, e.SlaPolicyApplied, e.SlaCalendarRevised)


def deadlines_in(payload: e.EventPayload) -> dict[str, datetime]:
    """clock name -> the deadline this event sets for it."""
    found = {}
    for clock, name in _CLOCK_FIELDS:
        due = getattr(payload, name, None)
        if due is not None:
            found[clock] = due
    return found


def kept_clocks(case: Case, payload: e.EventPayload) -> frozenset[str]:
    """The clocks whose deadline in `payload` derives from the case's current one (a move, not a new cycle).

    A re-dispatch after a return keeps the resolve clock: the enterprise waits all the same.
    """
    if isinstance(payload, _MOVES):
        return frozenset(deadlines_in(payload))
    if isinstance(payload, e.AppealDispatched) and payload.resolve_due == case.resolve_due:
        return frozenset({"resolve"})
    return frozenset()


def warning_at(case: Case, policy: SlaPolicy, clock: str, due: datetime) -> datetime:
    """When the remaining time falls to (1 - warning share) of the goal."""
    goal = policy.goal(case.category, case.priority)
    return policy.before(goal, due, (1 - policy.warning_share) * policy.goal_minutes(goal, clock))


def supervision_at(case: Case, policy: SlaPolicy, due: datetime) -> datetime:
    """A breach still open this long after its deadline goes to 督办."""
    return policy.after(policy.goal(case.category, case.priority), due, policy.supervision_after_minutes)


def pending_timers(case: Case, policy: SlaPolicy) -> list[Timer]:
    """The SLA events the running clocks still owe, each with the instant it falls due.

    Derived from state alone, so any worker can recompute them after a restart or a rebalance.
    """
    timers: list[Timer] = []
    for clock, due in running_clocks(case).items():
        if (clock, "breach") not in case.sla_marks:
            if (clock, "warning") not in case.sla_marks:
                timers.append(Timer(clock, "warning", warning_at(case, policy, clock, due), due))
            timers.append(Timer(clock, "breach", due, due))
        elif (clock, "supervision") not in case.sla_marks:
            timers.append(Timer(clock, "supervision", supervision_at(case, policy, due), due))
    return timers


def sla_status(case: Case, now: datetime) -> str:
    """on_time, due_soon (warned), overdue, paused, or none (no clock)."""
    if case.status is Status.SUSPENDED:
        return "paused"
    clocks = running_clocks(case)
    if not clocks:
        return "none"
    if any(now >= due or (clock, "breach") in case.sla_marks for clock, due in clocks.items()):
        return "overdue"
    if any((clock, "warning") in case.sla_marks for clock in clocks):
        return "due_soon"
    return "on_time"
