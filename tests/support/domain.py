"""A pure-core test bench: the shipped policy, reference data, and random command sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from suqiu.base.policy import load_policy
from suqiu.domain import Case, CommandMeta, DomainError, decide, evolve
from suqiu.domain.access import Principal
from suqiu.domain.commands import parse_command
from suqiu.domain.model import Actor, Role, Status
from suqiu.domain.refdata import Category, Context, Department, Jurisdiction

POLICY = load_policy()
CTX = Context(
    policy=POLICY,
    departments={d: Department(d, d, "tj-binhai") for d in ("bh-market", "bh-hrss", "bh-planning")},
    jurisdictions={"tj-binhai": Jurisdiction("tj-binhai", "滨海新区", "district", None)},
    categories={c: Category(c, c) for c in ("approval", "labor", "other")},
)
T0 = datetime(2026, 7, 21, 2, 0, tzinfo=UTC)
SUBMIT = {
    "source_system": "hotline", "source_ref": "R1",
    "enterprise": {"uscc": "91110000600037341L", "name": "某公司"},
    "channel": "hotline", "category": "approval", "priority": "normal", "jurisdiction": "tj-binhai",
    "title": "标题", "content": "内容",
}


def meta(n: int, actor: Actor, at: datetime = T0) -> CommandMeta:
    # An enterprise acts through a key bound to its own USCC (suqiu.domain.access).
    usccs = frozenset({SUBMIT["enterprise"]["uscc"]}) if actor.role is Role.ENTERPRISE else frozenset()
    return CommandMeta(command_id=f"c{n}", case_id="case-1", actor=actor, issued_at=at,
                       event_ids=(f"e{n}a", f"e{n}b"), principal=Principal(actor, usccs))


ACTORS = {
    "dispatcher": Actor("s", Role.DISPATCHER), "market": Actor("s", Role.DEPARTMENT, "bh-market"),
    "hrss": Actor("s", Role.DEPARTMENT, "bh-hrss"), "enterprise": Actor("s", Role.ENTERPRISE),
    "system": Actor("s", Role.SYSTEM), "auditor": Actor("s", Role.AUDITOR),
}
COMMANDS = [
    ("dispatch", {"department": "bh-market"}), ("dispatch", {"department": "bh-hrss"}), ("accept", {}),
    ("return", {"reason": "r"}), ("transfer", {"department": "bh-hrss", "reason": "r"}),
    ("request_materials", {"items": ["x"]}), ("supply_materials", {}),
    ("request_extension", {"working_days": 2, "reason": "r"}), ("grant_extension", {}),
    ("deny_extension", {"reason": "r"}), ("escalate", {"target_system": "tj-city", "reason": "r"}),
    ("upper_level_reply", {"upper_case_id": "u", "content": "c"}), ("reply", {"content": "c"}),
    ("close", {"outcome": "resolved"}), ("close", {"outcome": "duplicate"}), ("feedback", {"rating": "satisfied"}),
    ("reopen", {"reason": "r"}), ("urge", {}), ("withdraw", {"reason": "r"}),
    ("record_sla_warning", {"clock": "resolve", "due_at": "2026-07-28T10:00:00+08:00"}),
    ("record_sla_breach", {"clock": "resolve", "due_at": "2026-07-28T10:00:00+08:00"}),
    ("open_supervision", {"clock": "resolve", "reason": "r"}),
]
steps = st.lists(st.tuples(st.sampled_from(COMMANDS), st.sampled_from(sorted(ACTORS)), st.integers(0, 600)),
                 max_size=40)


def run(sequence: list[Any]) -> tuple[Case, list[Any], list[tuple[Status, str]]]:
    case, log, accepted = Case(case_id="case-1"), [], []
    at = T0
    for ev in decide(case, parse_command("submit", SUBMIT), meta(0, Actor("s", Role.INTAKE), at), CTX):
        case = evolve(case, ev)
        log.append(ev)
    for n, ((type_name, body), who, minutes) in enumerate(sequence, start=1):
        at = at + timedelta(minutes=minutes)
        before = case.status
        try:
            events = decide(case, parse_command(type_name, body), meta(n, ACTORS[who], at), CTX)
        except DomainError:
            continue
        for ev in events:
            case = evolve(case, ev)
            log.append(ev)
        accepted.append((before, type_name))
    return case, log, accepted
