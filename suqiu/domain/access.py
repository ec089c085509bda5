"""Who may read and act (权限): every such rule, each with the text quoted when it refuses.

The shells (HTTP, Kafka, the board) authenticate a key and ask here; none keeps a rule of
its own. A principal is the authenticated key: the actor it records in events and, for
enterprise and intake keys, the enterprises or source systems it is bound to. Whose case
it is, and which department holds it, come from the case, never from what a sender claims.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from suqiu.domain.errors import DomainError
from suqiu.domain.model import OPEN, Actor, Case, Role, Status
from suqiu.domain.refdata import Department, current

S = Status
DISPATCHING = frozenset({Role.DISPATCHER, Role.ADMIN})
SUBMITTING = frozenset({Role.INTAKE, Role.SYSTEM, Role.ADMIN})
IMPORTING = frozenset({Role.SYSTEM, Role.ADMIN})
ENTERPRISE_SIDE = frozenset({Role.ENTERPRISE, Role.INTAKE})

# A department reads the cases it (or a department merged into it) holds or held, and their figures.
DEPARTMENT_READS = "department scoping: reads too"
INTAKE_SYSTEMS = "an intake key submits only for the source systems it is bound to"
FIGURES = "department and jurisdiction figures are for government staff"
AUDITOR = "auditors are read-only"
READ_AUDIT = "the read audit trail is for auditors and admins"
ENTERPRISE_FILE = "an enterprise's file is for the enterprise, dispatchers, admins and auditors"
GATHERINGS = "a gathering is recorded by its host office (dispatcher, admin)"
ERASURE = "personal data is erased by an admin (PIPL art. 47)"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated key: its actor, and what it is bound to (empty: not bound).

    An enterprise key is always bound to one or more USCCs (an unbound one sees nothing); an
    intake key may be bound to source systems, and an unbound one submits for any.
    """

    actor: Actor
    usccs: frozenset[str] = frozenset()
    source_systems: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may issue a command and in which states; `text` is quoted in every rejection."""

    roles: frozenset[Role]
    states: frozenset[Status]
    text: str
    own_department: bool = False
    # Issued by Suqiu itself, never by a key: the erasure records what it has done.
    internal: bool = False


RULES: dict[str, Rule] = {
    # The system dispatches when 智能分拨's auto-dispatch is on for the category (docs/routing.md).
    "dispatch": Rule(DISPATCHING | {Role.SYSTEM}, frozenset({S.SUBMITTED, S.RETURNED}),
                     "派单 only from submitted or after a return"),
    "accept": Rule(frozenset({Role.DEPARTMENT}), frozenset({S.DISPATCHED}), "签收 only a dispatched case", True),
    "return": Rule(frozenset({Role.DEPARTMENT}), frozenset({S.DISPATCHED, S.ACCEPTED}), "退回 only a dispatched or accepted case", True),
    # The system transfers when a reorganisation retires a department (suqiu org load).
    "transfer": Rule(DISPATCHING | {Role.SYSTEM}, frozenset({S.DISPATCHED, S.ACCEPTED}),
                     "转办 only a dispatched or accepted case"),
    "request_materials": Rule(frozenset({Role.DEPARTMENT}), frozenset({S.ACCEPTED}), "补充材料 only on an accepted case", True),
    "supply_materials": Rule(ENTERPRISE_SIDE, frozenset({S.SUSPENDED}), "materials only for a suspended case"),
    "request_extension": Rule(frozenset({Role.DEPARTMENT}), frozenset({S.ACCEPTED}), "延期 only on an accepted case", True),
    "grant_extension": Rule(DISPATCHING, frozenset({S.ACCEPTED}), "延期 decisions only on an accepted case"),
    "deny_extension": Rule(DISPATCHING, frozenset({S.ACCEPTED}), "延期 decisions only on an accepted case"),
    "escalate": Rule(DISPATCHING, frozenset({S.ACCEPTED, S.RETURNED}), "上报 only an accepted or returned case"),
    "upper_level_reply": Rule(frozenset({Role.SYSTEM}), frozenset({S.ESCALATED}), "upper-level answers only for an escalated case"),
    "reply": Rule(frozenset({Role.DEPARTMENT}), frozenset({S.ACCEPTED}), "答复 only an accepted case", True),
    "close": Rule(DISPATCHING, OPEN, "办结 only a replied case (duplicate/withdrawn: any open case)"),
    "feedback": Rule(ENTERPRISE_SIDE, frozenset({S.CLOSED}), "评价 only a closed case"),
    "reopen": Rule(DISPATCHING, frozenset({S.CLOSED}), "重办 only a closed case"),
    "urge": Rule(DISPATCHING, OPEN, "催办 only an open case"),
    "withdraw": Rule(ENTERPRISE_SIDE, OPEN, "撤回 only an open case"),
    "merge_into": Rule(DISPATCHING, OPEN, "并件 only an open case"),
    "record_sla_warning": Rule(frozenset({Role.SYSTEM}), OPEN, "SLA events only on an open case"),
    "record_sla_breach": Rule(frozenset({Role.SYSTEM}), OPEN, "SLA events only on an open case"),
    "open_supervision": Rule(frozenset({Role.SYSTEM, Role.DISPATCHER}), OPEN, "督办 only an open case"),
    "apply_sla_policy": Rule(frozenset({Role.SYSTEM}), OPEN, "a policy change moves only open clocks"),
    "revise_sla_calendar": Rule(frozenset({Role.SYSTEM}), OPEN, "a calendar revision re-plans only open clocks"),
    "record_personal_erasure": Rule(frozenset({Role.SYSTEM}), frozenset(Status) - {S.NEW},
                                    "an erasure is recorded on any case of its subject", internal=True),
    "record_routing_suggestion": Rule(frozenset({Role.SYSTEM}), frozenset({S.SUBMITTED}),
                                      "a suggestion only before the first dispatch", internal=True),
}


def _no_case(case_id: str) -> DomainError:
    return DomainError("not_found", f"no case {case_id}", case_id=case_id)


def check_writable(actor: Actor) -> None:
    if actor.role is Role.AUDITOR:
        raise DomainError("forbidden", AUDITOR, rule="auditor read-only", role="auditor")


def authorize_submit(principal: Principal, source_system: str) -> None:
    role = principal.actor.role
    if role not in SUBMITTING:
        raise DomainError("forbidden", f"role {role.value} may not submit",
                          rule="submit is for intake, system, admin", role=role.value)
    if role is Role.INTAKE and principal.source_systems and source_system not in principal.source_systems:
        raise DomainError("forbidden", f"this key submits for {', '.join(sorted(principal.source_systems))}, "
                          f"not {source_system}", rule=INTAKE_SYSTEMS, field="source_system")


def authorize_import(actor: Actor) -> None:
    if actor.role not in IMPORTING:
        raise DomainError("forbidden", f"role {actor.role.value} may not import history",
                          rule="import is for system, admin", role=actor.role.value)


def authorize(case: Case, type_name: str, principal: Principal, *, keyed: bool = True) -> None:
    """May `principal` issue `type_name` on `case` now: role, state, department and enterprise.
    `keyed`: the command came with an authenticated key (not from Suqiu's own timers or tools)."""
    actor = principal.actor
    check_enterprise(case, principal)
    rule = RULES[type_name]
    role = actor.role
    if role not in rule.roles:
        raise DomainError(
            "forbidden", f"role {role.value} may not {type_name}",
            rule=f"{type_name} is for {', '.join(sorted(r.value for r in rule.roles))}", role=role.value,
        )
    if rule.internal and keyed:
        raise DomainError("forbidden", f"{type_name} is recorded by Suqiu itself, not sent with a key",
                          rule=rule.text, role=role.value)
    if case.status not in rule.states:
        raise DomainError(
            "invalid_state", f"{type_name} is not allowed when the case is {case.status.value}: {rule.text}",
            state=case.status.value, rule=rule.text,
        )
    if rule.own_department and role is Role.DEPARTMENT and case.department != actor.department:
        raise DomainError(
            "forbidden", f"department {actor.department} may act only on cases assigned to it",
            rule="department scoping: the case is assigned to another department",
            department=actor.department,
        )


def check_enterprise(case: Case, principal: Principal) -> None:
    """An enterprise key meets another enterprise's case as a case that does not exist; so does an
    intake key bound to source systems meet another system's case (it reads and acts for its own)."""
    if principal.actor.role is Role.ENTERPRISE and (case.enterprise is None
                                                    or case.enterprise.uscc not in principal.usccs):
        raise _no_case(case.case_id)
    if principal.actor.role is Role.INTAKE and principal.source_systems \
            and case.source_system not in principal.source_systems:
        raise _no_case(case.case_id)


def answers_for(principal: Principal, departments: Mapping[str, Department]) -> frozenset[str]:
    """The departments whose cases, history and figures a department key holds: its own, and
    every department merged into it, through the chain (承接: after a merge the successor holds
    the merged department's cases and history). A dissolution hands over only the open cases,
    by transfer. Empty for other roles."""
    own = principal.actor.department
    if principal.actor.role is not Role.DEPARTMENT or own is None:
        return frozenset()
    return frozenset(code for code in departments if current(departments, code) == own) | {own}


def read_needs_history(case: Case, principal: Principal, departments: Mapping[str, Department]) -> bool:
    """Whether reading `case` turns on the departments that held it before (check_read's `held`)."""
    return principal.actor.role is Role.DEPARTMENT and case.department not in answers_for(principal, departments)


def check_read(case: Case, principal: Principal, departments: Mapping[str, Department], *, held: bool = False) -> None:
    """May `principal` read `case`; `held`: one of the departments it answers for held the case at some time."""
    check_enterprise(case, principal)
    if read_needs_history(case, principal, departments) and not held:
        raise DomainError("forbidden", f"department {principal.actor.department} may read only cases assigned to it "
                          "or to a department merged into it", rule=DEPARTMENT_READS,
                          department=principal.actor.department)


@dataclass(frozen=True, slots=True)
class ListScope:
    """What a case list is limited to for a principal; None: not limited that way."""

    department: str | None = None
    usccs: frozenset[str] | None = None
    source_systems: frozenset[str] | None = None


def list_scope(principal: Principal, department: str | None, departments: Mapping[str, Department]) -> ListScope:
    """The case list `principal` may see, asked for `department` (None: any)."""
    actor = principal.actor
    if actor.role is Role.DEPARTMENT:
        department = department or actor.department
        check_figures(principal, department, departments)
    if actor.role is Role.ENTERPRISE:
        return ListScope(department, usccs=principal.usccs)
    if actor.role is Role.INTAKE and principal.source_systems:
        return ListScope(department, source_systems=principal.source_systems)
    return ListScope(department)


def check_figures(principal: Principal, department: str | None, departments: Mapping[str, Department]) -> None:
    """Department figures: staff read them; a department only those of the departments it answers
    for (department=None: a jurisdiction's)."""
    actor = principal.actor
    if actor.role is Role.ENTERPRISE:
        raise DomainError("forbidden", FIGURES, rule=FIGURES, role=actor.role.value)
    if actor.role is Role.DEPARTMENT and department not in answers_for(principal, departments):
        raise DomainError("forbidden", f"department {actor.department} may read only its own figures and cases, "
                          "and those of departments merged into it", rule=DEPARTMENT_READS,
                          department=actor.department)


def sees_personal(case: Case, principal: Principal, departments: Mapping[str, Department]) -> bool:
    """Whether `principal` reads `case`'s personal fields in plain text (PIPL: the minimum needed):
    dispatchers and admins, the department that holds the case (or its successor), and the
    enterprise itself. Everyone else, auditors included, sees them masked."""
    actor = principal.actor
    if actor.role in DISPATCHING:
        return True
    if actor.role is Role.ENTERPRISE:
        return case.enterprise is not None and case.enterprise.uscc in principal.usccs
    return actor.role is Role.DEPARTMENT and case.department in answers_for(principal, departments)


def sees_routing(principal: Principal) -> bool:
    """Whether `principal` reads a case's routing suggestion (智能分拨): an internal working note,
    naming other enterprises' cases as duplicates, so not for the enterprise or an intake system."""
    return principal.actor.role not in (Role.ENTERPRISE, Role.INTAKE)


def check_erasure(principal: Principal) -> None:
    if principal.actor.role is not Role.ADMIN:
        raise DomainError("forbidden", ERASURE, rule=ERASURE, role=principal.actor.role.value)


def check_enterprise_file(principal: Principal, uscc: str) -> None:
    """An enterprise's file: the enterprise itself (its key's USCCs), dispatchers, admins and
    auditors. Another enterprise meets a file that does not exist."""
    role = principal.actor.role
    if role is Role.ENTERPRISE and uscc not in principal.usccs:
        raise DomainError("not_found", f"no enterprise {uscc}", uscc=uscc)
    if role not in (Role.ENTERPRISE, Role.DISPATCHER, Role.ADMIN, Role.AUDITOR):
        raise DomainError("forbidden", ENTERPRISE_FILE, rule=ENTERPRISE_FILE, role=role.value)


def may_read_figures(principal: Principal, department: str | None, departments: Mapping[str, Department]) -> bool:
    """Whether the board offers `principal` a page of those figures (department None: a
    jurisdiction's, as the 热点 page shows)."""
    try:
        check_figures(principal, department, departments)
    except DomainError:
        return False
    return True


def may_read_enterprise_file(principal: Principal, uscc: str) -> bool:
    """Whether the board links a case to its enterprise's file for `principal`."""
    try:
        check_enterprise_file(principal, uscc)
    except DomainError:
        return False
    return True


def check_gathering_record(principal: Principal) -> None:
    """Gatherings are recorded by the office that hosts them (dispatchers, admins)."""
    if principal.actor.role not in DISPATCHING:
        raise DomainError("forbidden", GATHERINGS, rule=GATHERINGS, role=principal.actor.role.value)


def check_gathering_read(principal: Principal) -> None:
    """A gathering and its account are for government staff and the systems that submit."""
    if principal.actor.role is Role.ENTERPRISE:
        raise DomainError("forbidden", FIGURES, rule=FIGURES, role=principal.actor.role.value)


def check_read_audit(principal: Principal) -> None:
    """Who read what (安全审计) is for auditors and admins alone."""
    if principal.actor.role not in (Role.AUDITOR, Role.ADMIN):
        raise DomainError("forbidden", READ_AUDIT, rule=READ_AUDIT, role=principal.actor.role.value)


def visible_departments(principal: Principal, codes: Iterable[str], departments: Mapping[str, Department]) -> list[str]:
    """The departments whose load `principal` may see in a listing."""
    actor = principal.actor
    if actor.role is Role.ENTERPRISE:
        return []
    if actor.role is Role.DEPARTMENT:
        mine = answers_for(principal, departments)
        return sorted(c for c in codes if c in mine)
    return sorted(codes)


def may_issue(principal: Principal, command_type: str, status: Status | None = None) -> bool:
    """Whether `principal`'s role may issue `command_type` at all, and on a case in `status` when
    given (the board offers its button only then); the department is still checked when the
    command is decided."""
    rule = RULES.get(command_type)
    return rule is not None and principal.actor.role in rule.roles and (status is None or status in rule.states)
