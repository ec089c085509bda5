"""The read audit trail (安全审计): every read and every refused authentication, hash-chained per
writer, written in batches so a read never waits on its own row."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

log = structlog.get_logger(__name__)
GENESIS = bytes(32)
FLUSH_SECONDS = 0.05  # how long an entry may wait for its batch
MAX_BATCH = 1000
QUEUE_LIMIT = 100_000  # past this, entries are counted and dropped with an error line, never silently
COLUMNS = ("writer", "seq", "at", "key_prefix", "role", "method", "path", "case_id", "status", "remote")


@dataclass(frozen=True, slots=True)
class Access:
    """One read (or refused authentication): who (key prefix, role), what, when, from where, answer."""

    at: datetime
    key_prefix: str | None
    role: str | None
    method: str
    path: str
    case_id: str | None
    status: int
    remote: str | None


def entry_hash(prev: bytes, writer: str, seq: int, access: Access) -> bytes:
    """SHA-256 over the previous hash and the entry's canonical JSON (its time in microseconds)."""
    at = access.at.astimezone(UTC).isoformat(timespec="microseconds")  # as stored, whatever the session's zone
    fields = {**asdict(access), "at": at, "writer": writer, "seq": seq}
    return hashlib.sha256(prev + json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()).digest()


class AccessLog:
    """One writer's chain: `record` queues, a background task appends batches in one statement."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self.writer = f"w-{uuid.uuid4().hex[:12]}"
        self._queue: list[Access] = []
        self._seq = 0
        self._prev = GENESIS
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = False
        self.dropped = 0

    def record(self, access: Access) -> None:
        if len(self._queue) >= QUEUE_LIMIT:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("access log cannot keep up: entries dropped", dropped=self.dropped)
            return
        self._queue.append(access)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(FLUSH_SECONDS)  # let the batch fill
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                # Kept in the queue (the chain is not advanced): the next round writes them.
                log.warning("access log not written; retrying", exc_info=True, waiting=len(self._queue))
                await asyncio.sleep(1.0)
                self._wake.set()

    async def flush(self) -> int:
        """Write what is queued, a batch per transaction; returns how many entries were written.
        One flush at a time: two would give the same entries the same places in the chain."""
        async with self._lock:
            written = 0
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                rows, prev, seq = [], self._prev, self._seq
                for access in batch:
                    seq += 1
                    digest = entry_hash(prev, self.writer, seq, access)
                    rows.append((self.writer, seq, access.at, access.key_prefix, access.role, access.method,
                                 access.path, access.case_id, access.status, access.remote, prev, digest))
                    prev = digest
                try:
                    async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                        await cur.executemany(
                            "INSERT INTO access_log (" + ", ".join(COLUMNS) + ", prev_hash, hash) VALUES "
                            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
                except psycopg.errors.UniqueViolation:
                    # A batch whose commit was confirmed to nobody (a connection lost after it) is
                    # in the table already, whole: the chain goes on from there.
                    if not await self._committed(seq):
                        raise
                    log.info("access log batch found written after a lost answer", writer=self.writer, seq=seq)
                del self._queue[:len(batch)]
                self._prev, self._seq = prev, seq
                written += len(batch)
            return written

    async def _committed(self, seq: int) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM access_log WHERE writer = %s AND seq = %s", (self.writer, seq))
            return await cur.fetchone() is not None

    async def close(self) -> None:
        """Write what is queued and stop; a flush under way finishes rather than being cut off."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        try:
            await self.flush()
        except Exception:
            log.error("access log entries not written at shutdown", waiting=len(self._queue), exc_info=True)


async def prune(pool: AsyncConnectionPool[Any], now: datetime, days: int) -> int:
    """Delete what is older than the retention; returns how many rows went."""
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM access_log WHERE at < %s", (now - timedelta(days=days),))
        return int(cur.rowcount)


async def search(conn: psycopg.AsyncConnection[Any], *, case_id: str | None = None, key_prefix: str | None = None,
                 start: datetime | None = None, end: datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Entries, newest first, by case, key prefix and time."""
    where, params = ["true"], []
    for clause, value in (("case_id = %s", case_id), ("key_prefix = %s", key_prefix), ("at >= %s", start),
                          ("at < %s", end)):
        if value is not None:
            where.append(clause)
            params.append(value)
    cur = await conn.execute(
        f"SELECT at, key_prefix, role, method, path, case_id, status, remote FROM access_log "
        f"WHERE {' AND '.join(where)} ORDER BY at DESC, id DESC LIMIT %s", [*params, limit])
    names = ("at", "key_prefix", "role", "method", "path", "case_id", "status", "remote")
    return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class Broken:
    writer: str
    seq: int
    problem: str


def verify(rows: Iterable[tuple[Any, ...]]) -> tuple[int, list[Broken]]:
    """Check every chain: rows of (writer, seq, at, key_prefix, role, method, path, case_id, status,
    remote, prev_hash, hash) in (writer, seq) order. The first row left of a chain anchors it."""
    checked, broken = 0, []
    writer, seq, prev = None, 0, b""
    for row in rows:
        w, s = row[0], int(row[1])
        access = Access(row[2], row[3], row[4], row[5], row[6], row[7], int(row[8]), row[9])
        stored_prev, stored = bytes(row[10]), bytes(row[11])
        if w != writer:
            writer, prev = w, stored_prev  # the anchor: genesis, or the last row retention deleted
        elif s != seq + 1:
            broken.append(Broken(w, s, f"rows {seq + 1} to {s - 1} are missing"))
            prev = stored_prev
        if stored_prev != prev:
            broken.append(Broken(w, s, "does not follow the row before it"))
        if entry_hash(stored_prev, w, s, access) != stored:
            broken.append(Broken(w, s, "was edited: its hash does not match its fields"))
        prev, seq = stored, s
        checked += 1
    return checked, broken


VERIFY_SQL = ("SELECT " + ", ".join(COLUMNS) + ", prev_hash, hash FROM access_log ORDER BY writer, seq")
