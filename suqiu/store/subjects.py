"""The subject keys of personal data, in PostgreSQL (personal_subjects), behind `KeyStore`.

A deployment with a KMS replaces `PgKeyStore` by its own `KeyStore`; nothing else changes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from suqiu.base.sealing import MasterKey, SealError, new_key
from suqiu.store.group import _Group

CLAIM_BATCH = 256
log = structlog.get_logger(__name__)

_CLAIM = (
    "INSERT INTO personal_subjects (subject_id, lookup, wrapped_key, created_at) "
    "SELECT * FROM unnest(%s::uuid[], %s::bytea[], %s::bytea[], %s::timestamptz[]) "
    # An existing contact keeps its subject: the no-op update makes RETURNING give its row.
    "ON CONFLICT (lookup) DO UPDATE SET lookup = EXCLUDED.lookup "
    "RETURNING subject_id::text, lookup, wrapped_key"
)
_KEYS = ("SELECT subject_id::text, wrapped_key FROM personal_subjects "
         "WHERE subject_id = ANY(%s::uuid[]) AND wrapped_key IS NOT NULL")
_ERASE = ("UPDATE personal_subjects SET wrapped_key = NULL, lookup = NULL, erased_at = %s, erase_reason = %s "
          "WHERE subject_id = ANY(%s::uuid[]) AND wrapped_key IS NOT NULL RETURNING subject_id::text")
_STATE = "SELECT erased_at, erase_reason, created_at FROM personal_subjects WHERE subject_id = %s"


@dataclass(frozen=True, slots=True)
class SubjectKey:
    subject: str
    key: bytes


@dataclass(frozen=True, slots=True)
class SubjectState:
    created_at: datetime
    erased_at: datetime | None
    erase_reason: str | None


class KeyStore(Protocol):
    async def claim(self, lookups: Sequence[bytes | None], now: datetime) -> list[SubjectKey]:
        """A subject and its key for each lookup, in order: the existing one, or a new one
        (a None lookup always gets a new subject)."""

    async def keys(self, subjects: Sequence[str]) -> dict[str, bytes]:
        """The keys of those subjects that have one; an erased or unknown subject is absent."""

    async def erase(self, subjects: Sequence[str], reason: str, now: datetime) -> set[str]:
        """Delete the subjects' keys; the subjects that had one left to delete."""

    async def state(self, subject: str) -> SubjectState | None:
        """When the subject was created and erased; None when there is no such subject."""


class PgKeyStore:
    """Subject keys in personal_subjects, wrapped by the master key."""

    def __init__(self, pool: AsyncConnectionPool[Any], master: MasterKey) -> None:
        self.pool = pool
        self.master = master
        self._claims = _Claims(self)

    async def claim(self, lookups: Sequence[bytes | None], now: datetime) -> list[SubjectKey]:
        # Concurrent submits claim together: one statement and one commit per batch.
        return list(await asyncio.gather(*(self._claims.claim(lookup, now) for lookup in lookups)))

    async def claim_on(self, conn: AsyncConnection[Any], lookups: Sequence[bytes | None],
                       now: datetime) -> list[SubjectKey]:
        """`claim` for a batch, on one connection."""
        # One row per distinct lookup: a statement may not update one row twice.
        wanted: dict[bytes | int | None, tuple[str, bytes | None]] = {}
        for i, lookup in enumerate(lookups):
            if (lookup if lookup is not None else i) not in wanted:
                subject = str(uuid.uuid4())
                wanted[lookup if lookup is not None else i] = (subject, lookup)
        rows = list(wanted.values())
        ids = [s for s, _ in rows]
        fresh = {s: new_key() for s in ids}
        wrapped = [self.master.wrap(s, fresh[s]) for s in ids]
        # One round trip: the transaction's statements go in a pipeline.
        async with conn.pipeline(), conn.transaction():
            # No flush of its own: the event that uses a key commits after it, and that commit's
            # flush covers this one's WAL, so an acknowledged event never outlives its key. A key
            # lost in a crash was used by no stored event.
            await conn.execute("SET LOCAL synchronous_commit = off")
            cur = await conn.execute(_CLAIM, (ids, [lk for _, lk in rows], wrapped, [now] * len(rows)))
        got = await cur.fetchall()

        def key(subject: str, wrapped_key: bytes) -> SubjectKey:
            mine = fresh.get(subject)
            return SubjectKey(subject, mine if mine is not None else self.master.unwrap(subject, wrapped_key))

        by_lookup = {bytes(lk): key(s, bytes(w)) for s, lk, w in got if lk is not None}
        by_id = {s: key(s, bytes(w)) for s, lk, w in got if lk is None}
        return [by_lookup[lk] if lk is not None else by_id[wanted[i][0]] for i, lk in enumerate(lookups)]

    async def keys(self, subjects: Sequence[str]) -> dict[str, bytes]:
        if not subjects:
            return {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_KEYS, (list(subjects),))
            rows = await cur.fetchall()
        out = {}
        for subject, wrapped in rows:
            try:
                out[subject] = self.master.unwrap(subject, bytes(wrapped))
            except SealError:
                # Another master key than the one that wrapped it (a lost or replaced key file):
                # the reader sees the field as unreadable, and the operator this line.
                log.error("a subject key does not unwrap: SUQIU_MASTER_KEY_FILE is not the key it was wrapped with",
                          subject=subject)
        return out

    async def erase(self, subjects: Sequence[str], reason: str, now: datetime) -> set[str]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_ERASE, (now, reason, list(subjects)))
            return {r[0] for r in await cur.fetchall()}

    async def state(self, subject: str) -> SubjectState | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_STATE, (subject,))
            row = await cur.fetchone()
        return None if row is None else SubjectState(row[2], row[0], row[1])


class _Claims(_Group[tuple[bytes | None, datetime], SubjectKey]):
    """Subject claims of concurrent submits, one statement per batch."""

    def __init__(self, store: PgKeyStore) -> None:
        super().__init__(store.pool, CLAIM_BATCH)
        self._store = store

    async def claim(self, lookup: bytes | None, now: datetime) -> SubjectKey:
        return await self._submit((lookup, now))

    async def _run(self, conn: AsyncConnection[Any], items: list[tuple[bytes | None, datetime]]) -> list[SubjectKey]:
        return await self._store.claim_on(conn, [lookup for lookup, _ in items], max(now for _, now in items))


_CASES_OF = ("SELECT state->>'subject', case_id FROM case_view WHERE state->>'subject' = ANY(%s) "
             "ORDER BY 1, 2")
# Subjects whose every case ended (closed or withdrawn) before `cut`, and subjects with no case
# at all claimed before it (a submit refused after its contact was sealed).
_EXPIRED = (
    "SELECT s.subject_id::text FROM personal_subjects s WHERE s.wrapped_key IS NOT NULL AND s.created_at < %(cut)s "
    "AND NOT EXISTS (SELECT 1 FROM case_view c WHERE c.state->>'subject' = s.subject_id::text "
    "AND (c.status NOT IN ('closed', 'withdrawn') OR c.closed_at >= %(cut)s)) "
    "ORDER BY s.created_at LIMIT %(limit)s"
)


async def cases_of(pool: AsyncConnectionPool[Any], subjects: Sequence[str]) -> list[tuple[str, str]]:
    """(subject, case id) of each case whose personal fields are sealed under one of `subjects`
    (from the read models)."""
    async with pool.connection() as conn:
        cur = await conn.execute(_CASES_OF, (list(subjects),))
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def expired(pool: AsyncConnectionPool[Any], cut: datetime, limit: int) -> list[str]:
    """Subjects past their retention at `cut` (the instant their last case must have ended by)."""
    async with pool.connection() as conn:
        cur = await conn.execute(_EXPIRED, {"cut": cut, "limit": limit})
        return [r[0] for r in await cur.fetchall()]
