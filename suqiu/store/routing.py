"""Routing models in PostgreSQL (routing_models), the history they learn from, and the open cases
a new appeal is compared with (重复件)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

# A case's text as submitted (its AppealSubmitted in the timeline, t): the title, a new line, the content.
_TEXT = "coalesce(t.data->>'title', '') || E'\\n' || coalesce(t.data->>'content', '')"
# Cases answered by a department: the text, its category, and the department that holds it after
# the reply (the one that replied).
_LABELLED = (f"SELECT v.case_id, v.submitted_at, {_TEXT}, v.category, v.department FROM case_view v "
             "JOIN case_timeline t ON t.case_id = v.case_id AND t.seq = 1 AND t.event_type = 'AppealSubmitted' "
             "WHERE v.status IN ('replied', 'closed') AND v.state->>'replied_at' IS NOT NULL "
             "AND v.department IS NOT NULL ORDER BY v.submitted_at, v.case_id")
# For each new case (its enterprise, jurisdiction, and the start of its window): the newest open
# cases of the same enterprise, or of the same jurisdiction within the window.
_OPEN_LIKE = (
    "SELECT q.i, v.case_id FROM unnest(%(cases)s::text[], %(usccs)s::text[], %(jurisdictions)s::text[], "
    "%(sinces)s::timestamptz[]) WITH ORDINALITY AS q(case_id, uscc, jurisdiction, since, i) "
    "CROSS JOIN LATERAL (SELECT v.case_id FROM case_view v WHERE v.status NOT IN ('closed', 'withdrawn') "
    "AND v.case_id <> q.case_id AND (v.enterprise_uscc = q.uscc OR (v.jurisdiction = q.jurisdiction "
    "AND v.submitted_at >= q.since)) ORDER BY v.submitted_at DESC LIMIT %(limit)s) v")
_TEXTS = f"SELECT t.case_id, {_TEXT} FROM case_timeline t WHERE t.seq = 1 AND t.case_id = ANY(%s)"
_COLUMNS = "version, trained_at, window_from, window_to, org_version, cases, metrics, active, decision"


@dataclass(frozen=True, slots=True)
class Labelled:
    """One answered case as a model learns from it."""

    case_id: str
    submitted_at: datetime
    text: str
    category: str
    department: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A stored model without its arrays."""

    version: str
    trained_at: datetime
    window_from: datetime
    window_to: datetime
    org_version: int
    cases: int
    metrics: dict[str, Any]
    active: bool
    decision: str

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "trained_at": self.trained_at.isoformat(),
                "window": {"from": self.window_from.isoformat(), "to": self.window_to.isoformat()},
                "org_version": self.org_version, "cases": self.cases, "metrics": self.metrics,
                "active": self.active, "decision": self.decision}


async def labelled(conn: psycopg.AsyncConnection[Any]) -> list[Labelled]:
    """Every answered case, oldest first."""
    cur = await conn.execute(_LABELLED)
    return [Labelled(*row) for row in await cur.fetchall()]


async def open_like(conn: psycopg.AsyncConnection[Any], new: Sequence[tuple[str, str, str, datetime]],
                    limit: int) -> list[list[str]]:
    """For each new case (case id, USCC, jurisdiction, window start): the ids of the open cases it
    may duplicate, newest first, at most `limit`; one query for a whole batch."""
    cur = await conn.execute(_OPEN_LIKE, {"cases": [n[0] for n in new], "usccs": [n[1] for n in new],
                                          "jurisdictions": [n[2] for n in new], "sinces": [n[3] for n in new],
                                          "limit": limit})
    out: list[list[str]] = [[] for _ in new]
    for i, case_id in await cur.fetchall():
        out[i - 1].append(case_id)
    return out


async def texts(conn: psycopg.AsyncConnection[Any], case_ids: Sequence[str]) -> dict[str, str]:
    """Each case's text as submitted (title and content)."""
    cur = await conn.execute(_TEXTS, (list(case_ids),))
    return {row[0]: row[1] for row in await cur.fetchall()}


async def save(conn: psycopg.AsyncConnection[Any], info: ModelInfo, model: bytes, signature: bytes) -> None:
    """Store a model; when `info.active`, it replaces the active one in the same transaction."""
    async with conn.transaction():
        if info.active:
            await conn.execute("UPDATE routing_models SET active = false WHERE active")
        await conn.execute(
            f"INSERT INTO routing_models ({_COLUMNS}, model, signature) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (info.version, info.trained_at, info.window_from, info.window_to, info.org_version, info.cases,
             Jsonb(info.metrics), info.active, info.decision, model, signature))


_LOCK = 0x5351_0005  # one training at a time; migrate, relay, rebuild, org load hold 0x5351_0001 to _0004


async def try_training_lock(conn: psycopg.AsyncConnection[Any]) -> bool:
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (_LOCK,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def training_unlock(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (_LOCK,))


async def active_version(conn: psycopg.AsyncConnection[Any]) -> str | None:
    cur = await conn.execute("SELECT version FROM routing_models WHERE active")
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def load(conn: psycopg.AsyncConnection[Any], version: str) -> tuple[ModelInfo, bytes, bytes] | None:
    """A stored model: what it is, its arrays and its signature."""
    cur = await conn.execute(f"SELECT {_COLUMNS}, model, signature FROM routing_models WHERE version = %s",
                             (version,))
    row = await cur.fetchone()
    return None if row is None else (ModelInfo(*row[:9]), bytes(row[9]), bytes(row[10]))


async def models(conn: psycopg.AsyncConnection[Any]) -> list[ModelInfo]:
    """Every model, newest first."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM routing_models ORDER BY trained_at DESC, version DESC")
    return [ModelInfo(*row) for row in await cur.fetchall()]
