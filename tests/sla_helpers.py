"""Helpers for the SLA and read-model tests: wait on the store and the read models, never on business time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from schemas.codec import Codec
from suqiu.config import Settings

T = TypeVar("T")
CST = timedelta(hours=8)
CODEC = Codec()


def cst(*args: int) -> datetime:
    """An instant given as Tianjin wall-clock time (year, month, day, hour, minute)."""
    return datetime(*args, tzinfo=UTC) - CST


def query(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(sql, params).fetchall()


async def eventually(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 20.0) -> T:
    """Poll `probe` (real time, a few ms per step) until `ok`; the last value on timeout, for the assert."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = probe()
    while not ok(value) and loop.time() < deadline:
        await asyncio.sleep(0.05)
        value = probe()
    return value


def sla_events(settings: Settings, case_id: str) -> list[tuple[str, str]]:
    """(event_type, clock) of the case's SLA events, in order, from the store."""
    rows = query(settings, "SELECT event_type, data FROM events WHERE case_id = %s AND event_type IN "
                 "('SlaWarning', 'SlaBreached', 'SupervisionOpened') ORDER BY seq", case_id)
    from schemas.codec import Codec
    codec = Codec()
    return [(r[0], codec.decode_event(bytes(r[1])).payload.clock) for r in rows]


def view_seq(settings: Settings, case_id: str) -> int:
    rows = query(settings, "SELECT seq FROM case_view WHERE case_id = %s", case_id)
    return int(rows[0][0]) if rows else 0


def store_seq(settings: Settings, case_id: str) -> int:
    rows = query(settings, "SELECT max(seq) FROM events WHERE case_id = %s", case_id)
    return int(rows[0][0] or 0)


async def caught_up(settings: Settings, case_id: str, timeout: float = 20.0) -> int:
    """Wait until the read model reflects every stored event of the case."""
    seq = await eventually(lambda: (view_seq(settings, case_id), store_seq(settings, case_id)),
                           lambda v: v[0] == v[1] and v[0] > 0, timeout)
    assert seq[0] == seq[1], f"read model at seq {seq[0]}, store at {seq[1]}"
    return seq[0]
