"""Erasing data subjects (个人信息删除, PIPL art. 47): on request, or when retention runs out.

The keys go first, then a `PersonalDataErased` is recorded on each of the subjects' cases
through the command path. Both steps may be repeated: a second run deletes nothing and records
only what the first could not (a case not yet in the read models, a crash in between).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from psycopg_pool import AsyncConnectionPool

from suqiu.base.clock import Clock
from suqiu.domain import DomainError
from suqiu.domain.model import Actor, Role
from suqiu.service.commands import CommandRequest, CommandResult, CommandService
from suqiu.store import subjects
from suqiu.store.subjects import KeyStore

log = structlog.get_logger(__name__)
RETENTION = "retention"  # who asked, in the events, when retention erases
BATCH = 1000  # subjects per round of a sweep or a bulk erasure
LANES = 32  # record commands in flight at once: the group commit stores them together
_COMMAND_IDS = uuid.UUID("5b1f4a8e-2d7c-4f0a-9c61-7e0d3b8a1f42")


def erasure_command_id(subject: str, case_id: str) -> str:
    """The same erasure on the same case is the same command, so a rerun records nothing twice."""
    return str(uuid.uuid5(_COMMAND_IDS, f"{subject}/{case_id}"))


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure did: the subjects whose key it deleted, and the cases it recorded it on."""

    subjects: list[str]
    keys_deleted: set[str] = field(default_factory=set)
    recorded: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        one = len(self.subjects) == 1
        return {"subject": self.subjects[0] if one else None, "subjects": self.subjects,
                "key_deleted": one and self.subjects[0] in self.keys_deleted, "keys_deleted": len(self.keys_deleted),
                "cases": self.recorded, "refused": self.refused}


class Erasure:
    """Deletes subjects' keys and records it on their cases, as the system actor."""

    def __init__(self, keys: KeyStore, service: CommandService, pool: AsyncConnectionPool[Any], clock: Clock,
                 system_id: str) -> None:
        self.keys, self.service, self.pool, self.clock, self.system_id = keys, service, pool, clock, system_id

    async def erase(self, subject: str, reason: str, by: str) -> Erased:
        """Erase one subject; `by` names who asked (a key prefix, or `retention`) in the events."""
        if await self.keys.state(subject) is None:
            raise DomainError("not_found", f"no data subject {subject}", subject=subject)
        return await self.erase_many([subject], reason, by)

    async def erase_many(self, subject_ids: Sequence[str], reason: str, by: str) -> Erased:
        deleted = await self.keys.erase(subject_ids, reason, self.clock.now())
        actor = Actor(self.system_id, Role.SYSTEM, None, by)
        found = await subjects.cases_of(self.pool, subject_ids)
        reqs = [CommandRequest("record_personal_erasure", erasure_command_id(subject, case_id), actor,
                               {"subject": subject, "reason": reason}, case_id=case_id) for subject, case_id in found]
        lanes = [reqs[i::LANES] for i in range(min(LANES, len(reqs)))]
        answered = await asyncio.gather(*(self.service.run(lane) for lane in lanes))
        answers = [(r.case_id or "", a) for lane, got in zip(lanes, answered, strict=True)
                   for r, a in zip(lane, got, strict=True)]
        recorded = sorted(c for c, a in answers if isinstance(a, CommandResult))
        refused = {c: a.message for c, a in answers if isinstance(a, DomainError)}
        log.info("personal data erased", subjects=len(subject_ids), keys_deleted=len(deleted), cases=len(recorded),
                 refused=len(refused), by=by, subject=subject_ids[0] if len(subject_ids) == 1 else None)
        return Erased(list(subject_ids), deleted, recorded, refused)

    async def sweep(self, days: int) -> int:
        """Erase every subject whose cases all ended more than `days` ago; how many were erased."""
        if days <= 0:
            return 0
        cut = self.clock.now() - timedelta(days=days)
        done = 0
        while due := await subjects.expired(self.pool, cut, BATCH):
            await self.erase_many(due, f"retention: {days} days after the last case ended", RETENTION)
            done += len(due)
        if done:
            log.info("retention erased personal data", subjects=done, days=days)
        return done
