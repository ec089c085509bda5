"""The event store: read a case by index, append a command's events atomically, chained."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg import errors

from suqiu.domain.events import Event
from suqiu.store.binary import COPY_AS, jsonb_bytes, uuid_bytes
from suqiu.store.probes import probe

NOTIFY_CHANNEL = "suqiu_outbox"
# Writers wake the relay after their commit, in a transaction of its own that need not wait for
# its WAL flush (set_config(..., true) lasts until that commit): a NOTIFY inside a write holds
# a database-wide lock through the write's flush, so all writers' commits queue behind each
# other's flushes (suqiu/sql/005_notify_after_commit.sql). A lost wake-up costs the relay's
# idle wait, never an event: the relay reads the outbox, not the notifications.
WAKE_RELAY = f"SELECT set_config('synchronous_commit', 'off', true), pg_notify('{NOTIFY_CHANNEL}', current_schema())"
CASE_EVENTS_SQL = "SELECT data FROM events WHERE case_id = %s AND seq > %s ORDER BY seq"
# A bulk load's outbox rows: its cases' events, found without scanning a table that is growing.
QUEUE_CASES = f"INSERT INTO outbox (position) SELECT r.position FROM {probe('events', 'case_id', 'position')}"


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


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a command needs read before it is decided.

    Every command: its id's earlier (request hash, result). A lifecycle command: its case's
    events after `after_seq`. A submit: the result of the submit that already created a case
    for its (source system, source reference).
    """

    command_id: str
    case_id: str | None = None
    after_seq: int = 0
    source: tuple[str, str] | None = None


@dataclass(slots=True)
class Found:
    prior: tuple[bytes, dict[str, Any]] | None = None
    original: dict[str, Any] | None = None
    newer: list[bytes] = field(default_factory=list)


# One index probe per key and kind (suqiu.store.probes); rows come back by lookup, then
# -1 (source reference), 0 (the command's own result), then the newer events in seq order.
_LOOKUPS_SQL = (
    "WITH k AS MATERIALIZED (SELECT * FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[], %b::text[]) "
    "WITH ORDINALITY AS k(command_id, case_id, after_seq, source_system, source_ref, i)) "
    "SELECT k.i, 0, c.request_hash, c.result, NULL::bytea FROM k CROSS JOIN LATERAL (SELECT request_hash, result "
    "FROM commands WHERE commands.command_id = k.command_id OFFSET 0) c "
    "UNION ALL SELECT k.i, -1, NULL, c.result, NULL FROM k CROSS JOIN LATERAL (SELECT command_id FROM source_refs s "
    "WHERE s.source_system = k.source_system AND s.source_ref = k.source_ref OFFSET 0) s CROSS JOIN LATERAL "
    "(SELECT result FROM commands WHERE commands.command_id = s.command_id OFFSET 0) c "
    "UNION ALL SELECT k.i, e.seq, NULL, NULL, e.data FROM k CROSS JOIN LATERAL (SELECT seq, data FROM events "
    "WHERE events.case_id = k.case_id AND events.seq > k.after_seq OFFSET 0) e "
    "ORDER BY 1, 2"
)


async def look_up(conn: psycopg.AsyncConnection[Any], lookups: list[Lookup]) -> list[Found]:
    """What each of several commands needs read, in one statement (see `Lookup`)."""
    cur = await conn.execute(_LOOKUPS_SQL, (
        [k.command_id for k in lookups], [k.case_id for k in lookups], [k.after_seq for k in lookups],
        [k.source[0] if k.source else None for k in lookups], [k.source[1] if k.source else None for k in lookups],
    ), prepare=True)
    found = [Found() for _ in lookups]
    for i, seq, request_hash, result, data in await cur.fetchall():
        f = found[i - 1]
        if seq > 0:
            f.newer.append(data)
        elif seq == 0:
            f.prior = (bytes(request_hash), result)
        else:
            f.original = dict(result)
    return found


_EVENT_COLUMNS = "case_id, seq, event_id, event_type, command_id, occurred_at, recorded_at, data, hash"
_EVENT_COPY_TYPES = ["text", "int4", COPY_AS["uuid"], "text", "text", "timestamptz", "timestamptz", "bytea", "bytea"]
_APPEND_SQL = (
    "SELECT refused_index, refused_by FROM append_commands(%b::text[], %b::text[], %b::bytea[], %b::jsonb[], "
    "%b::text[], %b::text[], %b::int[], %b::int[], %b::int[], %b::uuid[], %b::text[], %b::timestamptz[], "
    "%b::timestamptz[], %b::bytea[], %b::bytea[], %b)"
)
MAX_APPENDS = 32  # commands per append_many call: see suqiu/sql/004_append_commands.sql


@dataclass(frozen=True, slots=True)
class Append:
    """One command's write: its events (chained), its result, and for a submit its source reference."""

    encoded: list[Encoded]
    command_id: str
    request_hash: bytes
    result: dict[str, Any]
    source: tuple[str, str] | None = None


async def append_many(conn: psycopg.AsyncConnection[Any], appends: list[Append]) -> list[Exception | None]:
    """Store several commands in one transaction, each all or nothing (`conn` in autocommit).

    Per command: None when stored, else CaseConflict or DuplicateCommand (the others are stored).
    """
    assert conn.autocommit and 0 < len(appends) <= MAX_APPENDS
    first: list[int] = []
    last: list[int] = []
    events: list[Encoded] = []
    for a in appends:
        first.append(len(events) + 1)
        events.extend(a.encoded)
        last.append(len(events))
    params = (
        [a.command_id for a in appends], [a.encoded[0].event.case_id for a in appends],
        [a.request_hash for a in appends], [_RESULT.encode(a.result) for a in appends],
        [a.source[0] if a.source else None for a in appends], [a.source[1] if a.source else None for a in appends],
        first, last, [e.event.seq for e in events], [UUID(e.event.event_id) for e in events],
        [e.event.event_type for e in events], [e.event.occurred_at for e in events],
        [e.event.recorded_at for e in events], [e.data for e in events], [e.hash for e in events], None,
    )
    cur = await conn.execute(_APPEND_SQL, params, prepare=True)
    outcome: list[Exception | None] = [None] * len(appends)
    for index, constraint in await cur.fetchall():
        if constraint == "events_case_seq":
            outcome[index - 1] = CaseConflict(appends[index - 1].encoded[0].event.case_id)
        elif constraint in ("commands_pkey", "source_refs_pkey"):
            outcome[index - 1] = DuplicateCommand(constraint)
        else:  # an event id drawn twice: nothing the caller can fix by retrying
            outcome[index - 1] = RuntimeError(f"append refused by {constraint}")
    return outcome


_RESULT = json.JSONEncoder(ensure_ascii=False)


async def copy_many(conn: psycopg.AsyncConnection[Any], batch: list[Append]) -> None:
    """Many new cases in one transaction with COPY: events, outbox rows, commands, source refs."""
    try:
        async with conn.transaction(), conn.cursor() as cur:
            async with cur.copy(f"COPY events ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_EVENT_COPY_TYPES)
                for a in batch:
                    for enc in a.encoded:
                        ev = enc.event
                        await copy.write_row((ev.case_id, ev.seq, uuid_bytes(ev.event_id), ev.event_type,
                                              ev.command_id, ev.occurred_at, ev.recorded_at, enc.data, enc.hash))
            async with cur.copy("COPY commands (command_id, case_id, request_hash, result) "
                                "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "bytea", COPY_AS["jsonb"]])
                for a in batch:
                    await copy.write_row((a.command_id, a.encoded[0].event.case_id, a.request_hash,
                                          jsonb_bytes(_RESULT.encode(a.result))))
            async with cur.copy("COPY source_refs (source_system, source_ref, case_id, command_id) "
                                "FROM STDIN") as copy:
                for a in batch:
                    assert a.source is not None, "only new cases, each with its source reference, go by COPY"
                    await copy.write_row((*a.source, a.encoded[0].event.case_id, a.command_id))
            await cur.execute(QUEUE_CASES, ([a.encoded[0].event.case_id for a in batch],))
    except errors.UniqueViolation as exc:
        raise DuplicateCommand(exc.diag.constraint_name or "") from exc
    await conn.execute(WAKE_RELAY)
