"""Gatherings (座谈会, 上门问需, 领导走访, 双万双服): where appeals are raised together, and to whose
participants the host owes an account (交账). Their vocabulary and the rules of their record.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from suqiu.domain import inputs
from suqiu.domain.errors import DomainError, invalid
from suqiu.domain.model import SATISFIED
from suqiu.domain.uscc import uscc_problem

KINDS = {"symposium": "座谈会", "visit": "上门问需", "leader_visit": "领导走访", "service_round": "双万双服"}
MAX_APPEALS = 500  # appeals submitted in one call
MAX_PARTICIPANTS = 1000
_IDS = uuid.UUID("5d1c2a6e-8f0b-4c47-9a43-2b6f1e0c9d71")  # namespace of gathering ids
FIELDS = frozenset({"command_id", "kind", "date", "jurisdiction", "title", "participants", "host"})


@dataclass(frozen=True, slots=True)
class Participant:
    uscc: str
    name: str


@dataclass(frozen=True, slots=True)
class Gathering:
    """A gathering as recorded: what kind, when, where, who came, about what, and who hosts."""

    gathering_id: str
    kind: str
    held_on: date
    jurisdiction: str
    title: str
    host: str
    participants: tuple[Participant, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"gathering_id": self.gathering_id, "kind": self.kind, "kind_label": KINDS[self.kind],
                "date": self.held_on.isoformat(), "jurisdiction": self.jurisdiction, "title": self.title,
                "host": self.host, "participants": [{"uscc": p.uscc, "name": p.name} for p in self.participants]}


def gathering_id_of(command_id: str) -> str:
    """The id a gathering gets from the command that records it: the same command id sent again
    names the same gathering, so a retried POST never records it twice."""
    return "g-" + uuid.uuid5(_IDS, command_id).hex


def parse_gathering(body: Mapping[str, Any], jurisdictions: Sequence[str]) -> Gathering:
    """A gathering from its JSON body, or the error naming the first field that is wrong."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise invalid(unknown[0], "unknown field", allowed=sorted(FIELDS))
    gathering_id = gathering_id_of(inputs.identifier(body.get("command_id"), "command_id"))
    kind = inputs.text(body.get("kind"), "kind", 32)
    if kind not in KINDS:
        raise invalid("kind", f"unknown kind {kind!r}", allowed=sorted(KINDS))
    try:
        held_on = date.fromisoformat(inputs.text(body.get("date"), "date", 10))
    except ValueError:
        raise invalid("date", "is not an ISO date (2026-12-07)") from None
    jurisdiction = inputs.identifier(body.get("jurisdiction"), "jurisdiction")
    if jurisdiction not in jurisdictions:
        raise invalid("jurisdiction", f"unknown jurisdiction {jurisdiction!r}")
    raw = body.get("participants", [])
    if not isinstance(raw, list):
        raise invalid("participants", "must be a list of {uscc, name}")
    if len(raw) > MAX_PARTICIPANTS:
        raise invalid("participants", f"more than {MAX_PARTICIPANTS}", limit=MAX_PARTICIPANTS)
    participants = []
    for i, p in enumerate(raw):
        if not isinstance(p, Mapping) or set(p) - {"uscc", "name"}:
            raise invalid(f"participants[{i}]", "must be {uscc, name}")
        uscc = inputs.identifier(p.get("uscc"), f"participants[{i}].uscc")
        problem = uscc_problem(uscc)
        if problem:
            raise invalid(f"participants[{i}].uscc", problem, value=uscc)
        participants.append(Participant(uscc, inputs.text(p.get("name"), f"participants[{i}].name", 200)))
    return Gathering(gathering_id, kind, held_on, jurisdiction,
                     inputs.text(body.get("title"), "title", 200), inputs.text(body.get("host"), "host", 200),
                     tuple(participants))


def same_record(stored: Gathering, sent: Gathering) -> None:
    """A gathering is recorded once: the same body again is a repeat, another one a conflict."""
    if stored != sent:
        raise DomainError("idempotency_mismatch", f"command id recorded gathering {sent.gathering_id} with other details",
                          field="command_id", rule="a command id records one gathering")


ANSWERED = frozenset({"replied", "closed"})


def account_line(case: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """One appeal of the account (交账单): answered, answered in time, overdue now, rated satisfied.

    Answered: replied, or closed after a reply. In time: the reply came by the resolve deadline
    (the date promised). Overdue: a breach is recorded, or it is open past that deadline.
    """
    replied, due = case.get("replied_at"), case.get("resolve_due")
    answered = case["status"] in ANSWERED and replied is not None
    open_late = case["status"] not in ANSWERED | {"withdrawn"} and due is not None and due < now
    return {"answered": answered, "on_time": answered and due is not None and replied <= due,
            "overdue": bool(case.get("breached")) or open_late, "satisfied": case.get("rating") in SATISFIED}


def account_summary(lines: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """What the host reports back to the participants: how many, answered, in time, overdue, satisfied."""
    return {"appeals": len(lines), "answered": sum(ln["answered"] for ln in lines),
            "on_time": sum(ln["on_time"] for ln in lines), "overdue": sum(ln["overdue"] for ln in lines),
            "rated": sum(ln["rating"] is not None for ln in lines),
            "satisfied": sum(ln["satisfied"] for ln in lines)}
