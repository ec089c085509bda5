"""Personal data in the shell: sealing a submit's personal fields, opening them for a reader,
and erasing a subject (crypto-shredding) with its record on every case.

What counts as personal, the marks and the masks are `suqiu.domain.personal`; who reads plain
text is `suqiu.domain.access.sees_personal`; the keys are behind `suqiu.store.subjects.KeyStore`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from suqiu.base import sealing
from suqiu.base.sealing import MasterKey, SealError
from suqiu.domain.commands import Submit
from suqiu.domain.model import Case, Enterprise
from suqiu.domain.personal import Personal, Sealed, pull_numbers
from suqiu.store.subjects import KeyStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SealedSubmit:
    """A submit as it is decided: its contact removed, numbers in its texts marked; and the seal."""

    command: Submit
    personal: Sealed | None


class PersonalData:
    """Seals on the way in, opens on the way out; one per process (Runtime)."""

    def __init__(self, keys: KeyStore, master: MasterKey) -> None:
        self.keys = keys
        self.master = master

    async def seal(self, commands: Sequence[Submit], now: datetime) -> list[SealedSubmit]:
        """Each submit with its personal fields sealed under its contact's subject (one subject
        per contact of an enterprise; a submit with numbers but no contact gets its own)."""
        pulled = []
        for cmd in commands:
            (title, content), items = pull_numbers([cmd.title, cmd.content])
            ent = cmd.enterprise
            pulled.append((title, content, Personal(ent.contact_name, ent.contact_phone, items)))
        wanted = [i for i, (_, _, p) in enumerate(pulled) if p]
        claimed = await self.keys.claim([self._lookup(commands[i].enterprise) for i in wanted], now) if wanted else []
        subject_of = dict(zip(wanted, claimed, strict=True))
        out = []
        for i, (cmd, (title, content, personal)) in enumerate(zip(commands, pulled, strict=True)):
            got = subject_of.get(i)
            if got is None:
                out.append(SealedSubmit(cmd, None))
                continue
            stripped = dataclasses.replace(cmd, title=title, content=content, enterprise=dataclasses.replace(
                cmd.enterprise, contact_name=None, contact_phone=None))
            sealed = Sealed(got.subject, sealing.seal(got.key, got.subject, personal.to_bytes()))
            out.append(SealedSubmit(stripped, sealed))
        return out

    def _lookup(self, ent: Enterprise) -> bytes | None:
        if not (ent.contact_name or ent.contact_phone):
            return None
        return self.master.lookup(ent.uscc, ent.contact_phone or "", ent.contact_name or "")

    async def opened(self, cases: Sequence[Case]) -> dict[str, Personal | None]:
        """Each case's personal fields by case id; None where its subject is erased (or its
        ciphertext does not open). A case stored before sealing keeps its contact in the event."""
        subjects = {c.subject for c in cases if c.subject and c.sealed and not c.personal_erased}
        keys = await self.keys.keys(sorted(subjects)) if subjects else {}
        out: dict[str, Personal | None] = {}
        for case in cases:
            out[case.case_id] = self._open(case, keys)
        return out

    def _open(self, case: Case, keys: dict[str, bytes]) -> Personal | None:
        if case.subject is None or case.sealed is None:
            ent = case.enterprise
            return Personal(ent.contact_name if ent else None, ent.contact_phone if ent else None)
        key = keys.get(case.subject)
        if key is None or case.personal_erased:
            return None
        try:
            return Personal.from_bytes(sealing.unseal(key, case.subject, case.sealed))
        except SealError:
            log.error("personal data does not open: the event was altered or sealed under another key",
                      case_id=case.case_id, subject=case.subject)
            return None

