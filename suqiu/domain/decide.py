"""decide(case, command, meta, context) -> events: the lifecycle rules, pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, time
from typing import Any, TypeVar

from suqiu.domain import access, inputs
from suqiu.domain import commands as c
from suqiu.domain import events as e
from suqiu.domain.clocks import Clock, deadlines_in, kept_clocks, running_clocks, warning_at
from suqiu.domain.errors import DomainError, invalid
from suqiu.domain.model import (
    VOCABULARIES,
    Case,
    Status,
)
from suqiu.domain.refdata import Context
from suqiu.domain.sla import CHINA, Goal
from suqiu.domain.uscc import uscc_problem


def decide(case: Case, command: c.Command, meta: c.CommandMeta, ctx: Context) -> list[e.Event]:
    """The events `command` produces on `case`, or DomainError naming the rule it breaks.

    An empty list means the command was already satisfied (an SLA mark repeated).
    """
    access.check_writable(meta.actor)
    if meta.expected_seq is not None and meta.expected_seq != case.seq:
        raise DomainError(
            "conflict",
            f"expected_seq {meta.expected_seq} does not match the case's seq {case.seq}",
            expected_seq=meta.expected_seq, actual_seq=case.seq,
        )
    timed: list[tuple[e.EventPayload, datetime]]
    if isinstance(command, c.ImportCase):
        timed = _import(case, command, meta, ctx)
    elif isinstance(command, c.Submit):
        # A sender's clock a little ahead of ours: the appeal cannot have been raised after we recorded it.
        timed = [(_submit(case, command, meta, ctx), min(command.occurred_at or meta.issued_at, meta.issued_at))]
    else:
        if case.status is Status.NEW:
            raise DomainError("not_found", f"no case {meta.case_id}", case_id=meta.case_id)
        access.authorize(case, command.type, _principal(meta), keyed=meta.principal is not None)
        timed = [(p, meta.issued_at) for p in _HANDLERS[type(command)](case, command, meta, ctx)]
    if len(timed) > len(meta.event_ids):
        raise ValueError("not enough event ids supplied for the events decided")
    return [
        e.Event(
            event_id=meta.event_ids[i],
            case_id=meta.case_id,
            seq=case.seq + i + 1,
            occurred_at=occurred,
            recorded_at=meta.issued_at,
            actor=meta.actor,
            command_id=meta.command_id,
            correlation_id=meta.correlation_id or meta.command_id,
            causation_id=meta.causation_id or meta.command_id,
            payload=p,
        )
        for i, (p, occurred) in enumerate(timed)
    ]


def _principal(meta: c.CommandMeta) -> access.Principal:
    """Who issued the command: its authenticated key, or the actor alone (SLA timers, imports)."""
    return meta.principal or access.Principal(meta.actor)


def _check_vocab(field: str, value: str) -> None:
    allowed = VOCABULARIES[field]
    if value not in allowed:
        raise invalid(field, f"unknown value {value!r}", allowed=sorted(allowed))


def _check_category(ctx: Context, value: str) -> None:
    """The deployment's own categories (suqiu org load); a retired one takes no new appeals."""
    known = ctx.categories.get(value)
    if known is None or known.retired:
        allowed = sorted(c.code for c in ctx.categories.values() if not c.retired)
        raise invalid("category", f"unknown category {value!r}" if known is None else f"category {value!r} is retired",
                      allowed=allowed)


def _submit(case: Case, cmd: c.Submit, meta: c.CommandMeta, ctx: Context) -> e.EventPayload:
    access.authorize_submit(_principal(meta), cmd.source_system)
    if case.status is not Status.NEW:
        raise DomainError("conflict", f"case {meta.case_id} already exists", case_id=meta.case_id)
    problem = uscc_problem(cmd.enterprise.uscc)
    if problem:
        raise invalid("enterprise.uscc", problem, value=cmd.enterprise.uscc)
    _check_vocab("channel", cmd.channel)
    _check_category(ctx, cmd.category)
    _check_vocab("priority", cmd.priority)
    if cmd.jurisdiction not in ctx.jurisdictions:
        raise invalid("jurisdiction", f"unknown jurisdiction {cmd.jurisdiction!r}")
    if cmd.occurred_at is not None and cmd.occurred_at > meta.issued_at + inputs.CLOCK_SKEW:
        raise invalid("occurred_at", f"is more than {inputs.CLOCK_SKEW.seconds // 60} minutes in the future",
                      rule="occurred_at no later than now (senders' clocks may run ahead by 10 minutes)")
    sealed = meta.personal
    return e.AppealSubmitted(
        enterprise=cmd.enterprise, channel=cmd.channel, category=cmd.category, priority=cmd.priority,
        jurisdiction=cmd.jurisdiction, title=cmd.title, content=cmd.content,
        source_system=cmd.source_system, source_ref=cmd.source_ref,
        subject=sealed.subject if sealed else None, sealed=sealed.ciphertext if sealed else None,
        gathering=cmd.gathering or None,
    )


def _import(case: Case, cmd: c.ImportCase, meta: c.CommandMeta, ctx: Context) -> list[tuple[e.EventPayload, datetime]]:
    """A historical case as far as it went, each event at its original time (历史数据导入).

    Its clocks are settled as of its own last event: a resolve deadline the historical reply
    missed is recorded as the breach it was, at the deadline. A case still open at the import
    starts a fresh cycle at the import: an unanswered one is dispatched then, and a replied one
    owes its follow-up (回访) from then. No alarm is raised today for a cycle that ended years ago.
    """
    access.authorize_import(meta.actor)
    at = cmd.submitted_at
    if at > meta.issued_at:
        raise invalid("submitted_at", "is in the future")
    submitted = _submit(case, cmd, meta, ctx)
    out: list[tuple[e.EventPayload, datetime]] = [(submitted, at)]
    if cmd.replied_at is not None:
        if not cmd.department:
            raise invalid("department", "is required for a case that was replied to")
        if cmd.replied_at < at:
            raise invalid("replied_at", f"is before submitted_at ({at.isoformat()})")
        if cmd.replied_at > meta.issued_at:
            raise invalid("replied_at", "is in the future")
    if cmd.closed_at is not None:
        _check_vocab("outcome", cmd.outcome)
        if cmd.closed_at < (cmd.replied_at or at):
            raise invalid("closed_at", "is before the reply (or the submission)")
        if cmd.closed_at > meta.issued_at:
            raise invalid("closed_at", "is in the future")
        if cmd.replied_at is None and cmd.outcome not in ("duplicate", "withdrawn"):
            raise invalid("replied_at", f"is required to close with outcome {cmd.outcome}")
    if cmd.department:
        _known_department(ctx, cmd.department)
        goal = ctx.policy.goal(cmd.category, cmd.priority)
        # An unanswered case open at the import is dispatched at the import, on today's clocks.
        live = cmd.replied_at is None and cmd.closed_at is None
        dispatched = meta.issued_at if live else at
        resolve_due = ctx.policy.after(goal, dispatched, goal.resolve_minutes)
        out.append((_flag(ctx, goal, case, e.AppealDispatched(
            department=cmd.department, note=LIVE_IMPORT_NOTE if live else None,
            accept_due=ctx.policy.after(goal, dispatched, goal.accept_minutes), resolve_due=resolve_due)),
            dispatched))
        if cmd.replied_at is not None:
            out.append((e.AppealAccepted(department=cmd.department), at))
            if cmd.replied_at > resolve_due:
                out.append((e.SlaBreached(clock="resolve", due_at=resolve_due), resolve_due))
            # A follow-up still owed at the import is owed from the import, not from years ago.
            follow_from = cmd.replied_at if cmd.closed_at is not None else max(cmd.replied_at, meta.issued_at)
            out.append((_flag(ctx, goal, case, e.AppealReplied(
                department=cmd.department, content=cmd.reply or "（历史数据未记录答复内容）",
                follow_up_due=ctx.policy.after(goal, follow_from, goal.follow_up_minutes))), cmd.replied_at))
    if cmd.closed_at is not None:
        out.append((e.AppealClosed(outcome=cmd.outcome, note=cmd.close_note or "历史数据导入"), cmd.closed_at))
    return out


LIVE_IMPORT_NOTE = "历史数据导入：导入时尚未答复，自导入时起重新计时"


def _known_department(ctx: Context, code: str) -> None:
    """A case goes only to a department that exists now: a merged or dissolved one says where to."""
    found = ctx.departments.get(code)
    if found is None:
        raise invalid("department", f"unknown department {code!r}")
    if not found.active:
        target = found.merged_into or found.successor
        raise invalid("department", f"department {code!r} was {'merged' if found.merged_into else 'dissolved'}"
                      + (f": send it to {target!r}" if target else ""), rule="an active department", successor=target)


def _dispatch(case: Case, cmd: c.Dispatch, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    _known_department(ctx, cmd.department)
    goal = ctx.policy.goal(case.category, case.priority)
    now = meta.issued_at
    # A re-dispatch after a return keeps the resolution clock: the enterprise waits all the same.
    resolve_due = case.resolve_due or ctx.policy.after(goal, now, goal.resolve_minutes)
    return [_flag(ctx, goal, case, e.AppealDispatched(
        department=cmd.department, note=cmd.note or None,
        accept_due=ctx.policy.after(goal, now, goal.accept_minutes), resolve_due=resolve_due,
        responsible=cmd.responsible or None,
    ))]


def _accept(case: Case, cmd: c.Accept, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    return [e.AppealAccepted(department=_assigned(case), responsible=cmd.responsible or None)]


def _return(case: Case, cmd: c.Return, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    return [e.AppealReturned(department=_assigned(case), reason=cmd.reason)]


def _transfer(case: Case, cmd: c.Transfer, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    _known_department(ctx, cmd.department)
    if cmd.department == case.department:
        raise invalid("department", "is already the assigned department")
    goal = ctx.policy.goal(case.category, case.priority)
    return [_flag(ctx, goal, case, e.AppealTransferred(
        from_department=_assigned(case), to_department=cmd.department, reason=cmd.reason,
        accept_due=ctx.policy.after(goal, meta.issued_at, goal.accept_minutes),
    ))]


def _request_materials(case: Case, cmd: c.RequestMaterials, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    if not cmd.items:
        raise invalid("items", "name at least one item to supply")
    return [e.MaterialsRequested(items=list(cmd.items), note=cmd.note or None)]


def _supply_materials(case: Case, cmd: c.SupplyMaterials, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    assert case.paused_at is not None and case.resolve_due is not None
    goal = ctx.policy.goal(case.category, case.priority)
    paused = ctx.policy.working_minutes(goal, case.paused_at, meta.issued_at)
    return [_flag(ctx, goal, case, e.MaterialsSupplied(
        note=cmd.note or None, paused_from=case.paused_at,
        resolve_due=ctx.policy.after(goal, case.resolve_due, paused),
    ))]


def _request_extension(case: Case, cmd: c.RequestExtension, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    if not 1 <= cmd.working_days <= 30:
        raise invalid("working_days", "must be between 1 and 30")
    if case.extension_pending_days is not None:
        raise DomainError("invalid_state", "an extension request is already pending",
                          state=case.status.value, rule="one pending 延期 request at a time")
    if case.extensions_granted >= ctx.policy.max_extensions:
        raise DomainError("invalid_state", f"at most {ctx.policy.max_extensions} extension(s) per case",
                          state=case.status.value, rule="延期 at most once unless policy says otherwise")
    return [e.ExtensionRequested(working_days=cmd.working_days, reason=cmd.reason)]


def _pending_extension(case: Case) -> int:
    if case.extension_pending_days is None:
        raise DomainError("invalid_state", "no extension request is pending",
                          state=case.status.value, rule="延期 decisions need a pending request")
    return case.extension_pending_days


def _grant_extension(case: Case, cmd: c.GrantExtension, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    days = _pending_extension(case)
    assert case.resolve_due is not None
    goal = ctx.policy.goal(case.category, case.priority)
    return [_flag(ctx, goal, case, e.ExtensionGranted(
        working_days=days, resolve_due=ctx.policy.after(goal, case.resolve_due, ctx.policy.days(days))))]


def _deny_extension(case: Case, cmd: c.DenyExtension, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    _pending_extension(case)
    return [e.ExtensionDenied(reason=cmd.reason)]


def _escalate(case: Case, cmd: c.Escalate, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    if cmd.target_system == meta.actor.system:
        raise invalid("target_system", "must be another system than this one")
    return [e.AppealEscalated(target_system=cmd.target_system, reason=cmd.reason, upper_case_id=None)]


def _upper_level_reply(case: Case, cmd: c.RecordUpperLevelReply, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    return [e.UpperLevelReplied(upper_case_id=cmd.upper_case_id, content=cmd.content)]


def _reply(case: Case, cmd: c.Reply, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    goal = ctx.policy.goal(case.category, case.priority)
    return [_flag(ctx, goal, case, e.AppealReplied(
        department=_assigned(case), content=cmd.content,
        follow_up_due=ctx.policy.after(goal, meta.issued_at, goal.follow_up_minutes),
    ))]


def _close(case: Case, cmd: c.Close, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    _check_vocab("outcome", cmd.outcome)
    if cmd.outcome not in ("duplicate", "withdrawn") and case.status is not Status.REPLIED:
        raise DomainError(
            "invalid_state",
            f"close with outcome {cmd.outcome} is not allowed when the case is {case.status.value}: {access.RULES['close'].text}",
            state=case.status.value, rule=access.RULES["close"].text,
        )
    return [e.AppealClosed(outcome=cmd.outcome, note=cmd.note or None)]


def _feedback(case: Case, cmd: c.Feedback, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    _check_vocab("rating", cmd.rating)
    if case.rating is not None:
        raise DomainError("invalid_state", "this closure is already rated",
                          state=case.status.value, rule="one 评价 per closure")
    return [e.FeedbackReceived(rating=cmd.rating, comment=cmd.comment or None)]


def _reopen(case: Case, cmd: c.Reopen, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    department = _assigned(case)
    goal = ctx.policy.goal(case.category, case.priority)
    now = meta.issued_at
    return [_flag(ctx, goal, case, e.AppealReopened(
        reason=cmd.reason, department=department,
        accept_due=ctx.policy.after(goal, now, goal.accept_minutes),
        resolve_due=ctx.policy.after(goal, now, goal.resolve_minutes),
    ))]


def _urge(case: Case, cmd: c.Urge, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    return [e.Urged(note=cmd.note or None)]


def _withdraw(case: Case, cmd: c.Withdraw, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    return [e.AppealClosed(outcome="withdrawn", note=cmd.reason)]


def _merge_into(case: Case, cmd: c.MergeInto, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    """并件: the duplicate closes (outcome duplicate, its clocks stop); the main case must be another
    open case that is not itself merged, so a chain of merges never forms."""
    main = meta.related
    if main is None or main.status is Status.NEW:
        raise DomainError("not_found", f"no case {cmd.main_case_id}", case_id=cmd.main_case_id, field="main_case_id")
    if main.case_id == case.case_id:
        raise invalid("main_case_id", "a case cannot be merged into itself", rule="并件 into another case")
    if not main.is_open:
        raise DomainError("invalid_state", f"the main case {main.case_id} is {main.status.value}: 并件 only into an "
                          "open case", field="main_case_id", state=main.status.value, rule="并件 into an open case")
    return [e.AppealClosed(outcome="duplicate", note=cmd.note or f"并件：并入 {main.case_id}",
                           merged_into=main.case_id)]


def _record_personal_erasure(case: Case, cmd: c.RecordPersonalErasure, meta: c.CommandMeta,
                             ctx: Context) -> list[e.EventPayload]:
    """个人信息删除: once per case; a case of another subject is not this erasure's."""
    if case.subject != cmd.subject:
        raise invalid("subject", f"case {case.case_id} holds no personal data of subject {cmd.subject}",
                      rule="an erasure is recorded on the cases of its subject")
    return [] if case.personal_erased else [e.PersonalDataErased(subject=cmd.subject, reason=cmd.reason)]


def _record_routing_suggestion(case: Case, cmd: c.RecordRoutingSuggestion, meta: c.CommandMeta,
                               ctx: Context) -> list[e.EventPayload]:
    """智能分拨建议: one per case; a redelivered appeal is scored again and changes nothing."""
    if case.routing is not None:
        return []
    return [e.RoutingSuggested(model=cmd.model, categories=list(cmd.categories), departments=list(cmd.departments),
                               duplicates=list(cmd.duplicates))]


def _sla_mark(kind: str) -> Callable[[Case, Any, c.CommandMeta, Context], list[e.EventPayload]]:
    def handler(case: Case, cmd: Any, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
        _check_vocab("clock", cmd.clock)
        due = running_clocks(case).get(cmd.clock)
        # A timer may fire late, twice, or after the case moved on: only the current cycle counts.
        if (cmd.clock, kind) in case.sla_marks or due is None:
            return []
        if kind == "supervision":
            if (cmd.clock, "breach") not in case.sla_marks:
                raise DomainError("invalid_state", f"no open breach on the {cmd.clock} clock",
                                  state=case.status.value, rule="督办 follows a breach")
            return [e.SupervisionOpened(clock=cmd.clock, reason=cmd.reason)]
        if cmd.due_at != due:
            return []
        fires = due if kind == "breach" else warning_at(case, ctx.policy, cmd.clock, due)
        if meta.issued_at < fires:
            raise DomainError("invalid_state", f"the {cmd.clock} clock's {kind} is not due before {fires.isoformat()}",
                              state=case.status.value, rule=f"{kind} only once its time has come")
        if kind == "warning":
            if (cmd.clock, "breach") in case.sla_marks:
                return []
            return [e.SlaWarning(clock=cmd.clock, due_at=due)]
        return [e.SlaBreached(clock=cmd.clock, due_at=due)]
    return handler


def _apply_sla_policy(case: Case, cmd: c.ApplySlaPolicy, meta: c.CommandMeta, ctx: Context) -> list[e.EventPayload]:
    """Each open deadline moves by (new goal - previous goal): time already spent still counts."""
    if cmd.policy_version != ctx.policy.version:
        raise DomainError("conflict", f"this process runs SLA policy {ctx.policy.version!r}, not {cmd.policy_version!r}",
                          field="policy_version")
    if case.policy_version == cmd.policy_version:
        return []
    goal = ctx.policy.goal(case.category, case.priority)
    previous = {"accept": cmd.previous_accept_minutes, "resolve": cmd.previous_resolve_minutes,
                "follow_up": cmd.previous_follow_up_minutes}
    moved: dict[str, datetime | None] = {}
    for clock in Clock:
        due = clock.due(case)
        delta = ctx.policy.goal_minutes(goal, clock) - previous[clock]
        if due is None or case.status not in clock.moves_in or delta == 0:
            moved[clock] = None
        else:
            moved[clock] = ctx.policy.after(goal, due, delta) if delta > 0 else ctx.policy.before(goal, due, -delta)
    if all(v is None for v in moved.values()):
        return []
    return [_flag(ctx, goal, case, e.SlaPolicyApplied(
        policy_version=cmd.policy_version, previous_version=cmd.previous_version, accept_due=moved["accept"],
        resolve_due=moved["resolve"], follow_up_due=moved["follow_up"]))]


P = TypeVar("P", bound=e.EventPayload)


def _flag(ctx: Context, goal: Goal, case: Case, payload: P) -> P:
    """`payload` with its provisional fields: which of its deadlines lie on provisional days.

    A deadline moved from the case's own provisional one (a pause, an extension, a re-dispatch
    keeping the resolve clock) stays provisional, from the day that one was.
    """
    first = ctx.policy.calendar.is_workday.provisional_from
    held = {d.clock: d for d in case.provisional}
    kept = kept_clocks(case, payload)
    clocks: list[str] = []
    for clock, due in deadlines_in(payload).items():
        prior = held.get(clock) if clock in kept else None
        if prior is not None:
            first = min(first, prior.since)
            clocks.append(clock)
        elif ctx.policy.provisional(goal, due):
            clocks.append(clock)
    if not clocks:
        return payload
    changed: P = dataclasses.replace(payload, **{"provisional": sorted(clocks), "provisional_from": first.isoformat()})
    return changed


def _revise_sla_calendar(case: Case, cmd: c.ReviseSlaCalendar, meta: c.CommandMeta,
                         ctx: Context) -> list[e.EventPayload]:
    """Each provisional deadline whose days are now official keeps the working time it was walked
    over them, counted again on the official calendar from the same instant; one that lands at or
    before now breaches at once, naming the revision."""
    calendar = ctx.policy.calendar
    first = calendar.is_workday.provisional_from
    through = calendar.is_workday.official_through.isoformat()
    if cmd.official_through != through:
        raise DomainError("conflict", f"this process's calendar is official through {through}, "
                          f"not {cmd.official_through}", field="official_through")
    goal = ctx.policy.goal(case.category, case.priority)
    previous: dict[str, datetime] = {}
    revised: dict[str, datetime] = {}
    for held in case.provisional:
        due = Clock(held.clock).due(case)
        if due is None or held.since >= first:
            continue  # still wholly on provisional days: the next notice re-plans it
        anchor = max(held.anchor, datetime.combine(held.since, time(), CHINA))
        previous[held.clock] = due
        revised[held.clock] = calendar.add(anchor, calendar.as_placed(held.since).between(anchor, due)) \
            if due > anchor else due
    if not revised:
        return []
    out: list[e.EventPayload] = [_flag(ctx, goal, Case(case.case_id), e.SlaCalendarRevised(
        calendar=cmd.calendar, official_through=cmd.official_through,
        previous_accept_due=previous.get("accept"), previous_resolve_due=previous.get("resolve"),
        previous_follow_up_due=previous.get("follow_up"), accept_due=revised.get("accept"),
        resolve_due=revised.get("resolve"), follow_up_due=revised.get("follow_up")))]
    running = running_clocks(case)
    for clock, due in sorted(revised.items()):
        # Only a deadline the revision moved into the past: one already past is the timers' to breach.
        moved_past = due <= meta.issued_at < previous[clock]
        if clock in running and moved_past and (clock, "breach") not in case.sla_marks:
            out.append(e.SlaBreached(clock=clock, due_at=due, cause=f"日历修订 calendar revision: official "
                                                                     f"through {through} ({cmd.calendar})"))
    return out


def _assigned(case: Case) -> str:
    if case.department is None:
        raise DomainError("invalid_state", "the case has no assigned department",
                          state=case.status.value, rule="needs an assigned department")
    return case.department


_HANDLERS: dict[type[c.Command], Callable[[Case, Any, c.CommandMeta, Context], Sequence[e.EventPayload]]] = {
    c.Dispatch: _dispatch, c.Accept: _accept, c.Return: _return, c.Transfer: _transfer,
    c.RequestMaterials: _request_materials, c.SupplyMaterials: _supply_materials,
    c.RequestExtension: _request_extension, c.GrantExtension: _grant_extension,
    c.DenyExtension: _deny_extension, c.Escalate: _escalate, c.RecordUpperLevelReply: _upper_level_reply,
    c.Reply: _reply, c.Close: _close, c.Feedback: _feedback, c.Reopen: _reopen, c.Urge: _urge,
    c.Withdraw: _withdraw, c.MergeInto: _merge_into, c.RecordSlaWarning: _sla_mark("warning"),
    c.RecordSlaBreach: _sla_mark("breach"), c.OpenSupervision: _sla_mark("supervision"),
    c.ApplySlaPolicy: _apply_sla_policy, c.ReviseSlaCalendar: _revise_sla_calendar,
    c.RecordPersonalErasure: _record_personal_erasure, c.RecordRoutingSuggestion: _record_routing_suggestion,
}
