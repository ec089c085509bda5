"""Group commit and group read: a process's concurrent commands share their round trips.

On these machines a round trip to PostgreSQL costs more CPU than the statement it carries,
mostly in waking the other process (BENCHMARKS.md), so concurrent commands read together
and commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import structlog
from psycopg import AsyncConnection, OperationalError, errors
from psycopg_pool import AsyncConnectionPool

from suqiu.store.events import MAX_APPENDS, WAKE_RELAY, Append, Found, Lookup, append_many, look_up

log = structlog.get_logger(__name__)
DEADLOCK_RETRIES = 3
MAX_LOOKUPS = 64
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class _Group(ABC, Generic[ItemT, ResultT]):
    """Runs items as they come, `limit` at a time, at most `lanes` batches in flight.

    Alone, an item goes at once; under load, the items that arrive while the lanes are busy
    go together in the next batch. Each caller still waits for its own batch.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], limit: int, lanes: int = 2,
                 observe: Callable[[int], None] | None = None) -> None:
        self._pool = pool
        self._observe = observe  # told each batch's size (suqiu.base.metrics)
        self._limit = limit
        self._lanes = lanes
        self._running = 0
        self._waiting: deque[tuple[ItemT, asyncio.Future[ResultT]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _submit(self, item: ItemT) -> ResultT:
        done: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._running < self._lanes:
            self._running += 1
            task = asyncio.create_task(self._lane())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await done

    async def _lane(self) -> None:
        try:
            while self._waiting:
                batch: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
                while self._waiting and len(batch) < self._limit:
                    item, done = self._waiting.popleft()
                    if not done.cancelled():  # its request is gone and was never answered
                        batch.append((item, done))
                if not batch:
                    continue
                if self._observe is not None:
                    self._observe(len(batch))
                try:
                    async with self._pool.connection() as conn:
                        outcome = await self._run(conn, [item for item, _ in batch])
                except OperationalError as exc:  # the connection failed: every caller of the batch hears it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                except Exception as exc:
                    # One item the database or the codec refuses must fail alone, not its neighbours:
                    # the batch was rolled back whole, so each item goes again by itself.
                    if len(batch) == 1:
                        if not batch[0][1].done():
                            batch[0][1].set_exception(exc)
                        continue
                    log.warning("group batch refused, running its items one by one", size=len(batch),
                                error=type(exc).__name__)
                    for item, done in batch:
                        await self._alone(item, done)
                    continue
                for (_, done), result in zip(batch, outcome, strict=True):
                    if not done.done():
                        done.set_result(result)
        finally:
            self._running -= 1

    async def _alone(self, item: ItemT, done: asyncio.Future[ResultT]) -> None:
        """Run `item` by itself and answer its caller."""
        try:
            async with self._pool.connection() as conn:
                result = (await self._run(conn, [item]))[0]
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(result)

    @abstractmethod
    async def _run(self, conn: AsyncConnection[Any], items: list[ItemT]) -> list[ResultT]:
        """One result per item, in order."""


class GroupRead(_Group[Lookup, Found]):
    """What concurrent commands need read before deciding, one statement per batch."""

    def __init__(self, pool: AsyncConnectionPool[Any], lanes: int = 2) -> None:
        super().__init__(pool, MAX_LOOKUPS, lanes)

    async def read(self, lookup: Lookup) -> Found:
        return await self._submit(lookup)

    async def _run(self, conn: AsyncConnection[Any], items: list[Lookup]) -> list[Found]:
        return await look_up(conn, items)


class GroupCommit(_Group[Append, "Exception | None"]):
    """Concurrent commands' appends, one transaction per batch (each command all or nothing).

    A command still waits for the commit that stores it; what concurrent commands share is the
    round trip, the transaction's WAL flush and the relay's wake-up.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], lanes: int = 2,
                 observe: Callable[[int], None] | None = None) -> None:
        super().__init__(pool, MAX_APPENDS, lanes, observe)
        self._wake = RelayWakeUp(pool)

    async def close(self) -> None:
        await self._wake.close()

    async def append(self, item: Append) -> None:
        """Raises CaseConflict or DuplicateCommand as a single append would."""
        error = await self._submit(item)
        if error is not None:
            raise error

    async def _run(self, conn: AsyncConnection[Any], items: list[Append]) -> list[Exception | None]:
        # Every batch takes its cases' rows in the same order: two processes' batches then
        # wait on each other rather than deadlock (a deadlock is still retried below).
        order = sorted(range(len(items)), key=lambda i: items[i].encoded[0].event.case_id)
        ordered = [items[i] for i in order]
        attempt = 0
        while True:
            try:
                stored = await append_many(conn, ordered)
                break
            except errors.DeadlockDetected:
                if attempt == DEADLOCK_RETRIES:
                    raise
                # Two processes' batches wanted each other's rows (the same case written from both):
                # PostgreSQL rolled this one back whole; again, the loser now gets its conflict.
                log.info("group commit deadlocked, retrying", size=len(items), attempt=attempt)
                attempt += 1
        if any(error is None for error in stored):
            self._wake()
        outcome: list[Exception | None] = [None] * len(items)
        for i, error in zip(order, stored, strict=True):
            outcome[i] = error
        return outcome


class RelayWakeUp:
    """Wakes the outbox relay after commits (`WAKE_RELAY`), at most one wake-up in flight.

    Commits made while one is pending or in flight share the next.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], linger: float = 0.005) -> None:
        self._pool = pool
        self._linger = linger
        self._due = False
        self._task: asyncio.Task[None] | None = None

    def __call__(self) -> None:
        self._due = True
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Send what is due now rather than after the pool has closed under it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if self._due:
                async with self._pool.connection() as conn:
                    await conn.execute(WAKE_RELAY)
                self._due = False

    async def _run(self) -> None:
        try:
            while self._due:
                # The commits of the next few milliseconds share this wake-up (the relay waits as long
                # again before it reads): a round trip costs more CPU here than the statement it carries.
                await asyncio.sleep(self._linger)
                self._due = False
                try:
                    async with self._pool.connection() as conn:
                        await conn.execute(WAKE_RELAY, prepare=True)
                except Exception as exc:  # the relay still finds the events, after its idle wait
                    log.warning("could not wake the outbox relay", error=str(exc))
        finally:
            self._task = None
