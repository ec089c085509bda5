"""Which SLA clocks run for a case, and its SLA status at an instant."""

from __future__ import annotations

from datetime import datetime

from suqiu.domain.model import Case, Status

_RESOLVING = frozenset({Status.DISPATCHED, Status.ACCEPTED, Status.RETURNED})


def running_clocks(case: Case) -> dict[str, datetime]:
    """clock name -> due instant, for the clocks now running.

    Suspended (挂起) pauses every clock; escalated (上报) cases run on the upper level's clock.
    """
    clocks: dict[str, datetime] = {}
    if case.status is Status.DISPATCHED and case.accept_due is not None:
        clocks["accept"] = case.accept_due
    if case.status in _RESOLVING and case.resolve_due is not None:
        clocks["resolve"] = case.resolve_due
    if case.status is Status.REPLIED and case.follow_up_due is not None:
        clocks["follow_up"] = case.follow_up_due
    return clocks


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
