"""The event store: read a case by index, append a command's events atomically, chained."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors

from suqiu.domain.events import Event

NOTIFY_CHANNEL = "suqiu_outbox"
CASE_EVENTS_SQL = "SELECT data FROM events WHERE case_id = %s AND seq > %s ORDER BY seq"
COMMAND_SQL = "SELECT request_hash, result FROM commands WHERE command_id = %s"


class CaseConflict(Exception):
    """Another writer appended to the case first (unique case_id, seq)."""


class DuplicateCommand(Exception):
    """The command id, or the (source_system, source_ref), was stored by a concurrent writer."""


@dataclass(frozen=True, slots=True)
class Encoded:
    event: Event
    data: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class StoredEvent:
    position: int
    case_id: str
    seq: int
    event_id: str
    event_type: str
    data: bytes
    hash: bytes


async def read_case(conn: psycopg.AsyncConnection[Any], case_id: str, after_seq: int = 0) -> list[bytes]:
    """The case's event bytes after `after_seq`, in order (an index range scan)."""
    cur = await conn.execute(CASE_EVENTS_SQL, (case_id, after_seq), prepare=True)
    return [r[0] for r in await cur.fetchall()]


async def read_history(conn: psycopg.AsyncConnection[Any], case_id: str) -> list[StoredEvent]:
    cur = await conn.execute(
        "SELECT position, case_id, seq, event_id::text, event_type, data, hash FROM events "
        "WHERE case_id = %s ORDER BY seq",
        (case_id,),
    )
    return [StoredEvent(*r) for r in await cur.fetchall()]


async def find_command(conn: psycopg.AsyncConnection[Any], command_id: str) -> tuple[bytes, dict[str, Any]] | None:
    cur = await conn.execute(COMMAND_SQL, (command_id,), prepare=True)
    return _prior(await cur.fetchone())


async def read_for_command(
    conn: psycopg.AsyncConnection[Any], command_id: str, case_id: str, after_seq: int
) -> tuple[tuple[bytes, dict[str, Any]] | None, list[bytes]]:
    """The command's earlier result, if any, and the case's newer events: one round trip."""
    async with conn.pipeline():
        prior = await conn.execute(COMMAND_SQL, (command_id,), prepare=True)
        newer = await conn.execute(CASE_EVENTS_SQL, (case_id, after_seq), prepare=True)
    return _prior(await prior.fetchone()), [r[0] for r in await newer.fetchall()]


def _prior(row: tuple[Any, ...] | None) -> tuple[bytes, dict[str, Any]] | None:
    return None if row is None else (bytes(row[0]), row[1])


async def find_source(conn: psycopg.AsyncConnection[Any], source_system: str, source_ref: str) -> dict[str, Any] | None:
    """The original result of the submit that created the case for this source reference."""
    cur = await conn.execute(
        "SELECT c.result FROM source_refs s JOIN commands c USING (command_id) "
        "WHERE s.source_system = %s AND s.source_ref = %s",
        (source_system, source_ref),
        prepare=True,
    )
    row = await cur.fetchone()
    return None if row is None else dict(row[0])


async def append(
    conn: psycopg.AsyncConnection[Any],
    encoded: list[Encoded],
    *,
    command_id: str,
    request_hash: bytes,
    result: dict[str, Any],
    source: tuple[str, str] | None = None,
) -> None:
    """One transaction, one round trip: the events, their outbox rows, the command's result."""
    case_id = encoded[0].event.case_id
    try:
        async with conn.transaction(), conn.pipeline():
            await conn.execute(
                "INSERT INTO commands (command_id, case_id, request_hash, result) VALUES (%s, %s, %s, %s)",
                (command_id, case_id, request_hash, json.dumps(result, ensure_ascii=False)),
                prepare=True,
            )
            if source is not None:
                await conn.execute(
                    "INSERT INTO source_refs (source_system, source_ref, case_id, command_id) VALUES (%s, %s, %s, %s)",
                    (source[0], source[1], case_id, command_id),
                    prepare=True,
                )
            for enc in encoded:
                ev = enc.event
                await conn.execute(
                    "WITH e AS (INSERT INTO events (case_id, seq, event_id, event_type, command_id, occurred_at, "
                    "recorded_at, data, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING position) "
                    "INSERT INTO outbox (position) SELECT position FROM e",
                    (ev.case_id, ev.seq, ev.event_id, ev.event_type, ev.command_id, ev.occurred_at,
                     ev.recorded_at, enc.data, enc.hash),
                    prepare=True,
                )
            await conn.execute("SELECT pg_notify(%s, current_schema())", (NOTIFY_CHANNEL,), prepare=True)
    except errors.UniqueViolation as exc:
        constraint = exc.diag.constraint_name or ""
        if constraint == "events_case_seq":
            raise CaseConflict(case_id) from exc
        if constraint in ("commands_pkey", "source_refs_pkey"):
            raise DuplicateCommand(constraint) from exc
        raise


async def find_commands(conn: psycopg.AsyncConnection[Any], command_ids: list[str]
                        ) -> dict[str, tuple[bytes, dict[str, Any]]]:
    cur = await conn.execute("SELECT command_id, request_hash, result FROM commands WHERE command_id = ANY(%s)",
                             (command_ids,))
    return {r[0]: (bytes(r[1]), r[2]) for r in await cur.fetchall()}


async def find_sources(conn: psycopg.AsyncConnection[Any], refs: list[tuple[str, str]]
                       ) -> dict[tuple[str, str], dict[str, Any]]:
    cur = await conn.execute(
        "SELECT s.source_system, s.source_ref, c.result FROM source_refs s JOIN commands c USING (command_id) "
        "WHERE (s.source_system, s.source_ref) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([a for a, _ in refs], [b for _, b in refs]))
    return {(r[0], r[1]): dict(r[2]) for r in await cur.fetchall()}


async def append_many(
    conn: psycopg.AsyncConnection[Any],
    batch: list[tuple[list[Encoded], str, bytes, dict[str, Any], tuple[str, str]]],
) -> None:
    """Many new cases in one transaction with COPY: events, outbox rows, commands, source refs."""
    try:
        async with conn.transaction(), conn.cursor() as cur:
            async with cur.copy("COPY events (case_id, seq, event_id, event_type, command_id, occurred_at, "
                                "recorded_at, data, hash) FROM STDIN") as copy:
                for encoded, *_ in batch:
                    for enc in encoded:
                        ev = enc.event
                        await copy.write_row((ev.case_id, ev.seq, ev.event_id, ev.event_type, ev.command_id,
                                              ev.occurred_at, ev.recorded_at, enc.data, enc.hash))
            async with cur.copy("COPY commands (command_id, case_id, request_hash, result) FROM STDIN") as copy:
                for encoded, command_id, request_hash, result, _ in batch:
                    await copy.write_row((command_id, encoded[0].event.case_id, request_hash,
                                          json.dumps(result, ensure_ascii=False)))
            async with cur.copy("COPY source_refs (source_system, source_ref, case_id, command_id) "
                                "FROM STDIN") as copy:
                for encoded, command_id, _, _, source in batch:
                    await copy.write_row((source[0], source[1], encoded[0].event.case_id, command_id))
            await cur.execute("INSERT INTO outbox (position) SELECT position FROM events WHERE case_id = ANY(%s)",
                              ([b[0][0].event.case_id for b in batch],))
            await cur.execute("SELECT pg_notify(%s, current_schema())", (NOTIFY_CHANNEL,))
    except errors.UniqueViolation as exc:
        raise DuplicateCommand(exc.diag.constraint_name or "") from exc
