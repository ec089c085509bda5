"""Group commit: the appends of a process's concurrent commands, one transaction per batch."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import structlog
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from suqiu.store.events import MAX_APPENDS, Append, append_many

log = structlog.get_logger(__name__)
DEADLOCK_RETRIES = 3


class GroupCommit:
    """Stores appends as they come, `MAX_APPENDS` at a time, at most `flushers` batches in flight.

    A command still waits for the commit that stores it; what concurrent commands share is the
    round trip, the transaction's WAL flush and the relay's wake-up. Alone, a command goes at
    once; under load, the commands that arrive during a flush go together in the next one.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], flushers: int = 2) -> None:
        self._pool = pool
        self._flushers = flushers
        self._running = 0
        self._waiting: deque[tuple[Append, asyncio.Future[Exception | None]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def append(self, item: Append) -> None:
        """Raises CaseConflict or DuplicateCommand as a single append would."""
        done: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._running < self._flushers:
            self._running += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        error = await done
        if error is not None:
            raise error

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch: list[tuple[Append, asyncio.Future[Exception | None]]] = []
                while self._waiting and len(batch) < MAX_APPENDS:
                    item, done = self._waiting.popleft()
                    if not done.cancelled():  # its request is gone and was never answered: not stored
                        batch.append((item, done))
                if not batch:
                    continue
                # Every batch takes its cases' rows in the same order: two processes' batches then
                # wait on each other rather than deadlock (a deadlock is still retried below).
                batch.sort(key=lambda entry: entry[0].encoded[0].event.case_id)
                try:
                    outcome: list[Exception | None] = await self._store([item for item, _ in batch])
                except Exception as exc:  # the connection failed: every command of the batch hears it
                    outcome = [exc] * len(batch)
                for (_, done), error in zip(batch, outcome, strict=True):
                    if not done.done():
                        done.set_result(error)
        finally:
            self._running -= 1

    async def _store(self, items: list[Append]) -> list[Exception | None]:
        attempt = 0
        while True:
            try:
                async with self._pool.connection() as conn:
                    return await append_many(conn, items)
            except errors.DeadlockDetected:
                if attempt == DEADLOCK_RETRIES:
                    raise
                # Two processes' batches wanted each other's rows (the same case written from both):
                # PostgreSQL rolled this one back whole; again, the loser now gets its conflict.
                log.info("group commit deadlocked, retrying", size=len(items), attempt=attempt)
                attempt += 1
