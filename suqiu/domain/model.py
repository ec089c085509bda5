"""Vocabularies, the actor and the case state (the aggregate the events build)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suqiu.domain.routing import Routing


class Role(StrEnum):
    INTAKE = "intake"
    DISPATCHER = "dispatcher"
    DEPARTMENT = "department"
    ENTERPRISE = "enterprise"
    AUDITOR = "auditor"
    SYSTEM = "system"
    ADMIN = "admin"


class Status(StrEnum):
    """Case states; `returned` (退回待派) waits for the dispatcher after a department declines."""

    NEW = "new"
    SUBMITTED = "submitted"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    RETURNED = "returned"
    SUSPENDED = "suspended"
    ESCALATED = "escalated"
    REPLIED = "replied"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


TERMINAL = frozenset({Status.CLOSED, Status.WITHDRAWN})
OPEN = frozenset(s for s in Status if s not in TERMINAL and s is not Status.NEW)

CHANNELS = frozenset(
    {"hotline", "web", "app", "visit", "symposium", "workstation", "leader_visit", "letter", "upper_level"}
)
PRIORITIES = frozenset({"normal", "urgent"})
OUTCOMES = frozenset({"resolved", "explained", "unresolvable", "duplicate", "withdrawn"})
# 有效办结: the closures the 解决率 counts (not a withdrawal, not a duplicate).
HANDLED = frozenset({"resolved", "explained", "unresolvable"})
SATISFIED = frozenset({"satisfied", "basically_satisfied"})  # 满意 and 基本满意
RATINGS = frozenset({"satisfied", "basically_satisfied", "unsatisfied"})
CLOCKS = frozenset({"accept", "resolve", "follow_up"})
# The command fields that take a word from a fixed vocabulary, and which: decide checks them,
# the OpenAPI document lists them. Categories are each deployment's own (Context.categories).
VOCABULARIES = {"channel": CHANNELS, "priority": PRIORITIES, "outcome": OUTCOMES, "rating": RATINGS, "clock": CLOCKS}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who issued a command: system (deployment), role, department (for departments), person."""

    system: str
    role: Role
    department: str | None = None
    person: str | None = None


@dataclass(frozen=True, slots=True)
class Enterprise:
    uscc: str
    name: str
    contact_name: str | None = None
    contact_phone: str | None = None


@dataclass(frozen=True, slots=True)
class ProvisionalDeadline:
    """A clock's deadline placed on provisional days (no State Council notice yet, 暂定).

    `since` is the first provisional day when it was placed; `anchor` the instant from which its
    working time was walked over them, so a revision can walk the same time on the official days.
    """

    clock: str
    since: date
    anchor: datetime


@dataclass(frozen=True, slots=True)
class Case:
    """A case as its events have built it; `seq` is the last applied event's number."""

    case_id: str
    seq: int = 0
    status: Status = Status.NEW
    enterprise: Enterprise | None = None
    channel: str = ""
    category: str = ""
    priority: str = "normal"
    jurisdiction: str = ""
    title: str = ""
    source_system: str = ""
    source_ref: str = ""
    submitted_at: datetime | None = None
    department: str | None = None
    assigned_at: datetime | None = None
    accept_due: datetime | None = None
    resolve_due: datetime | None = None
    follow_up_due: datetime | None = None
    accepted_at: datetime | None = None
    replied_at: datetime | None = None
    closed_at: datetime | None = None
    paused_at: datetime | None = None
    extension_pending_days: int | None = None
    extensions_granted: int = 0
    outcome: str | None = None
    rating: str | None = None
    escalated_to: str | None = None
    reopen_count: int = 0
    # Which SLA events this cycle already has, as (clock, kind); the decider treats a
    # repeat as a no-op so timers may fire twice without a duplicate event.
    sla_marks: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    supervised: bool = False
    # The SLA policy version last applied to the open clocks ("" = the one in force at dispatch).
    policy_version: str = ""
    # The open clocks whose deadline is provisional, until a calendar revision re-plans them.
    provisional: tuple[ProvisionalDeadline, ...] = ()
    # Personal data (个人信息): the subject its fields are sealed under, the ciphertext, and whether
    # the subject has been erased since (suqiu.domain.personal).
    subject: str | None = None
    sealed: bytes | None = None
    personal_erased: bool = False
    gathering: str | None = None  # where it was raised (座谈会, 走访), when it was
    responsible: str | None = None  # 责任人 in the department that holds it, when one was named
    routing: Routing | None = None  # 智能分拨: what the model suggested before the first dispatch
    merged_into: str | None = None  # 并件: the open case this duplicate was merged into

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


_FIELD_NAMES: dict[type[Any], tuple[str, ...] | None] = {}


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """A dataclass type's field names in order, computed once per type."""
    names = record_fields(cls)
    if names is None:
        raise TypeError(f"{cls.__name__} is not a dataclass")
    return names


def record_fields(cls: type[Any]) -> tuple[str, ...] | None:
    """A dataclass type's field names, or None for any other type; computed once per type."""
    try:
        return _FIELD_NAMES[cls]
    except KeyError:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls)) \
            if dataclasses.is_dataclass(cls) else None
        return names


def plain(value: Any) -> Any:
    """A dataclass (nested ones too) as a dict of its fields, other values as they are.

    `dataclasses.asdict` without its deep copies: this runs for every command and event.
    """
    names = record_fields(type(value))
    if names is None:
        return value
    return {n: plain(getattr(value, n)) for n in names}
