"""Gatherings in PostgreSQL (gatherings), and the cases raised at one (from the read models)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg

from suqiu.domain.gatherings import Gathering, Participant

_INSERT = ("INSERT INTO gatherings (gathering_id, kind, held_on, jurisdiction, theme, host, participants, "
           "recorded_by, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) "
           "ON CONFLICT (gathering_id) DO NOTHING RETURNING 1")
_GET = ("SELECT gathering_id, kind, held_on, jurisdiction, theme, host, participants FROM gatherings "
        "WHERE gathering_id = %s")
# Each case with its 责任人 and its latest reply (答复), for the account.
_CASES = ("SELECT v.case_id, v.source_ref, v.title, v.enterprise_uscc, v.enterprise_name, v.status, v.department, "
          "v.state->>'responsible', v.resolve_due, (v.state->>'replied_at')::timestamptz, v.breached, v.supervised, "
          "v.closed_at, v.outcome, v.rating, r.reply FROM case_view v LEFT JOIN LATERAL (SELECT t.data->>'content' "
          "AS reply FROM case_timeline t WHERE t.case_id = v.case_id AND t.event_type IN ('AppealReplied', "
          "'UpperLevelReplied') ORDER BY t.seq DESC LIMIT 1) r ON true "
          "WHERE v.state->>'gathering' = %s ORDER BY v.submitted_at, v.case_id")


async def record(conn: psycopg.AsyncConnection[Any], g: Gathering, by: str, now: datetime) -> bool:
    """Store `g` unless its id is taken; True when stored now."""
    cur = await conn.execute(_INSERT, (g.gathering_id, g.kind, g.held_on, g.jurisdiction, g.title, g.host,
                                       json.dumps([{"uscc": p.uscc, "name": p.name} for p in g.participants],
                                                  ensure_ascii=False), by, now))
    return await cur.fetchone() is not None


async def get(conn: psycopg.AsyncConnection[Any], gathering_id: str) -> Gathering | None:
    cur = await conn.execute(_GET, (gathering_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    return Gathering(row[0], row[1], row[2], row[3], row[4], row[5],
                     tuple(Participant(p["uscc"], p["name"]) for p in row[6]))


async def cases(conn: psycopg.AsyncConnection[Any], gathering_id: str) -> list[dict[str, Any]]:
    """The gathering's cases as the read models hold them, in submission order."""
    cur = await conn.execute(_CASES, (gathering_id,))
    names = ("case_id", "source_ref", "title", "enterprise_uscc", "enterprise_name", "status", "department",
             "responsible", "resolve_due", "replied_at", "breached", "supervised", "closed_at", "outcome", "rating",
             "reply")
    return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
