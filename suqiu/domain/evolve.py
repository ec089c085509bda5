"""evolve(case, event) -> case: how each fact changes the case, pure and total."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from datetime import date
from typing import Any

from suqiu.domain import events as e
from suqiu.domain.clocks import Clock, deadlines_in, kept_clocks
from suqiu.domain.model import Case, ProvisionalDeadline, Status, field_names
from suqiu.domain.routing import Routing

_CASE_FIELDS = field_names(Case)
_CASE_VALUES = operator.attrgetter(*_CASE_FIELDS)
_POSITION = {name: i for i, name in enumerate(_CASE_FIELDS)}


def evolve(case: Case, event: e.Event) -> Case:
    """Apply one event; events must arrive in seq order with no gap."""
    if event.seq != case.seq + 1:
        raise ValueError(f"case {case.case_id}: event seq {event.seq} does not follow {case.seq}")
    # This runs for every event a projector, a rebuild or the command path reads: copying the
    # fields positionally is the cheapest way found (BENCHMARKS.md); dataclasses.replace
    # re-inspects every field per call.
    values = list(_CASE_VALUES(case))
    changes = _changes(case, event)
    if case.provisional or getattr(event.payload, "provisional", None):
        changes["provisional"] = _provisional(case, event, changes)
    for name, value in changes.items():
        values[_POSITION[name]] = value
    values[_POSITION["seq"]] = event.seq
    return Case(*values)


def _changes(case: Case, event: e.Event) -> dict[str, Any]:
    p, at = event.payload, event.occurred_at
    match p:
        case e.AppealSubmitted():
            return dict(status=Status.SUBMITTED, enterprise=p.enterprise, channel=p.channel,
                category=p.category, priority=p.priority, jurisdiction=p.jurisdiction, title=p.title,
                source_system=p.source_system, source_ref=p.source_ref, submitted_at=at,
                subject=p.subject, sealed=p.sealed, gathering=p.gathering,
            )
        case e.AppealDispatched():
            return dict(status=Status.DISPATCHED, department=p.department, assigned_at=at, accept_due=p.accept_due,
                resolve_due=p.resolve_due, accepted_at=None, sla_marks=_without(case, "accept"),
                responsible=p.responsible,
            )
        case e.AppealAccepted():
            return dict(status=Status.ACCEPTED, accepted_at=at, responsible=p.responsible or case.responsible)
        case e.AppealReturned():
            return dict(status=Status.RETURNED, department=None, assigned_at=None, accept_due=None,
                           accepted_at=None, responsible=None)
        case e.AppealTransferred():
            return dict(status=Status.DISPATCHED, department=p.to_department, assigned_at=at, accept_due=p.accept_due,
                accepted_at=None, sla_marks=_without(case, "accept"), responsible=None,
            )
        case e.MaterialsRequested():
            return dict(status=Status.SUSPENDED, paused_at=at)
        case e.MaterialsSupplied():
            return dict(status=Status.ACCEPTED, paused_at=None, resolve_due=p.resolve_due)
        case e.ExtensionRequested():
            return dict(extension_pending_days=p.working_days)
        case e.ExtensionGranted():
            # The moved deadline earns its own warning; a breach already recorded stays.
            return dict(extension_pending_days=None, extensions_granted=case.extensions_granted + 1,
                resolve_due=p.resolve_due, sla_marks=case.sla_marks - {("resolve", "warning")},
            )
        case e.ExtensionDenied():
            return dict(extension_pending_days=None)
        case e.AppealEscalated():
            return dict(status=Status.ESCALATED, escalated_to=p.target_system)
        case e.UpperLevelReplied():
            return dict(status=Status.REPLIED, replied_at=at)
        case e.AppealReplied():
            return dict(status=Status.REPLIED, replied_at=at, follow_up_due=p.follow_up_due)
        case e.AppealClosed():
            status = Status.WITHDRAWN if p.outcome == "withdrawn" else Status.CLOSED
            return dict(status=status, outcome=p.outcome, closed_at=at, rating=None, merged_into=p.merged_into)
        case e.FeedbackReceived():
            return dict(rating=p.rating)
        case e.AppealReopened():
            return dict(merged_into=None, status=Status.DISPATCHED, department=p.department, assigned_at=at, accept_due=p.accept_due,
                resolve_due=p.resolve_due, follow_up_due=None, accepted_at=None, replied_at=None,
                closed_at=None, outcome=None, rating=None, reopen_count=case.reopen_count + 1,
                sla_marks=frozenset(), supervised=False, responsible=None,
            )
        case e.Urged():
            return {}
        case e.SlaWarning():
            return dict(sla_marks=case.sla_marks | {(p.clock, "warning")})
        case e.SlaBreached():
            return dict(sla_marks=case.sla_marks | {(p.clock, "breach")})
        case e.SlaPolicyApplied():
            return dict(_moved(case, p), policy_version=p.policy_version)
        case e.SupervisionOpened():
            return dict(sla_marks=case.sla_marks | {(p.clock, "supervision")}, supervised=True)
        case e.SlaCalendarRevised():
            return _moved(case, p)
        case e.PersonalDataErased():
            return dict(personal_erased=True)
        case e.RoutingSuggested():
            return dict(routing=Routing(p.model, tuple(p.categories), tuple(p.departments), tuple(p.duplicates)))
    raise TypeError(f"unknown event payload {type(p).__name__}")


def _moved(case: Case, p: e.EventPayload) -> dict[str, Any]:
    """The deadlines a policy change or a calendar revision sets; one that moved earns its own
    warning, and a breach already recorded stays recorded."""
    placed = deadlines_in(p)
    moved = {c for c, due in placed.items() if due != Clock(c).due(case)}
    return dict({Clock(c).due_field: due for c, due in placed.items()},
                sla_marks=frozenset(m for m in case.sla_marks if not (m[0] in moved and m[1] == "warning")))


def _provisional(case: Case, event: e.Event, changes: dict[str, Any]) -> tuple[ProvisionalDeadline, ...]:
    """The case's provisional deadlines after `event`: set, kept (with their anchor) or dropped."""
    p = event.payload
    held = {d.clock: d for d in case.provisional}
    placed = deadlines_in(p)
    if placed:
        kept = kept_clocks(case, p)
        flagged = frozenset(getattr(p, "provisional", ()))
        since = getattr(p, "provisional_from", None)
        for clock in placed:
            prior = held.pop(clock, None)
            if clock in flagged and since is not None:
                anchor = prior.anchor if prior is not None and clock in kept else event.occurred_at
                held[clock] = ProvisionalDeadline(clock, date.fromisoformat(since), anchor)
    # A clock whose deadline the event cleared (a return, a reopen's follow-up) has none to re-plan.
    return tuple(d for c, d in sorted(held.items())
                 if changes.get(Clock(c).due_field, Clock(c).due(case)) is not None)


def replay_state(case_id: str, events: Iterable[e.Event]) -> Case:
    """The case built from its events from the start."""
    case = Case(case_id=case_id)
    for event in events:
        case = evolve(case, event)
    return case


def _without(case: Case, clock: str) -> frozenset[tuple[str, str]]:
    return frozenset(m for m in case.sla_marks if m[0] != clock)
