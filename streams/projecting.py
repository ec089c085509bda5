"""The events-topic side of the projector: decode each record once, dead-letter what cannot be.

Decoding and folding are CPU-bound Python; in the Faust worker's process they would hold the
GIL the consumer needs. `ProjectorProcesses` runs them in child processes instead, fed whole
batches, so the worker's loop only moves bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from suqiu.base.config import Settings
from suqiu.base.processes import settle_gc, worker_pool
from suqiu.domain.sla import CalendarError, SlaPolicy
from suqiu.projections.projector import Incoming, Position, Projector
from suqiu.schemas.codec import Codec, DecodeError
from suqiu.streams.catchup import held_seqs, skip_to
from suqiu.streams.dlq import Outgoing, dead_letter

log = structlog.get_logger(__name__)
# (topic, partition, offset, key, value, headers), as read from the events topic.
Record = tuple[str, int, int, bytes | None, bytes | None, list[tuple[str, bytes]]]
T = TypeVar("T")
HOLD_FIRST, HOLD_MAX = 1.0, 60.0  # seconds between tries of a batch the calendar cannot place


class EventsConsumer:
    """Feeds batches from appeals.events.v1 to the projector; never gives a batch up."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool[Any], codec: Codec, projector: Projector) -> None:
        self.settings = settings
        self.pool = pool
        self.codec = codec
        self.projector = projector

    async def unseen(self, records: Sequence[Record]) -> tuple[list[Record], list[Position]]:
        """The records the read models do not hold yet, and the positions of those they do.

        After a broker loss the relay republishes the whole store, and a worker on a new broker
        reads it all again: comparing each record's `seq` header with `case_view` in one query
        passes over history without decoding or folding it, so catching up takes as long as
        the new events, not the store. A record without the header is decoded as before.
        """
        places = [(r[3].decode("utf-8", "replace"), seq) if r[3] is not None and (seq := _seq(r[5])) is not None
                  else None for r in records]
        wanted = sorted({p[0] for p in places if p is not None})
        if not wanted:
            return list(records), []

        held_seq = await self._waiting_out_outages(lambda conn: held_seqs(conn, wanted), len(records))
        fresh: list[Record] = []
        held: list[Position] = []
        for record, place in zip(records, places, strict=True):
            if place is not None and place[1] <= held_seq.get(place[0], 0):
                held.append((record[0], record[1], record[2]))
            else:
                fresh.append(record)
        return fresh, held

    async def skip_to(self, records: Sequence[Record], fresh: Sequence[Record]) -> dict[int, int]:
        """Where to seek the partitions of this batch whose records were all held, when a
        republished history the read models hold goes on well past them (suqiu.streams.catchup)."""
        if not records or self.settings.jurisdiction_feeds:
            return {}  # the feeds agent reads through the same consumer and needs that history again
        busy = {r[1] for r in fresh}
        last: dict[int, int] = {}
        for _, partition, offset, *_ in records:
            if partition not in busy:
                last[partition] = max(last.get(partition, -1), offset)
        if not last:
            return {}  # every partition had new records: the usual batch asks nothing more
        topic = records[0][0]
        seeks = await self._waiting_out_outages(lambda conn: skip_to(conn, topic, last), len(records))
        if seeks:  # the checkpoint moves with the seek: the read models hold what is skipped
            await self.project([], [(topic, p, offset - 1) for p, offset in seeks.items()])
        return seeks

    def decode(self, records: Sequence[Record]) -> tuple[list[Incoming], list[Outgoing]]:
        """Records -> decoded events, dead letters."""
        good: list[Incoming] = []
        bad: list[Outgoing] = []
        for topic, partition, offset, key, value, headers in records:
            try:
                good.append(Incoming(topic, partition, offset, self.codec.decode_event(value or b"")))
            except (DecodeError, ValueError, KeyError) as exc:
                bad.append(dead_letter(self.settings.dlq_topic, topic, key, value, headers,
                                       f"undecodable event at {topic}[{partition}]@{offset}: {exc}"))
        return good, bad

    async def project(self, batch: Sequence[Incoming], held: Sequence[Position] = ()) -> int:
        """Apply the batch, waiting out database outages: its offsets (and those of the `held`
        records passed over) move only after the commit."""
        return await self._waiting_out_outages(lambda conn: self.projector.apply(conn, batch, held), len(batch))

    async def _waiting_out_outages(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], size: int) -> T:
        """`work` on a pooled connection, tried again with growing waits while the database is away."""
        delay = 0.2
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await work(conn)
            except psycopg.OperationalError as exc:
                log.warning("database unavailable, holding the batch", error=str(exc), size=size)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


@dataclass(frozen=True, slots=True)
class Projected:
    """What a projected batch leaves to the agent: dead letters to send, partitions to seek."""

    dead_letters: list[Outgoing] = field(default_factory=list)
    skip_to: dict[int, int] = field(default_factory=dict)  # partition -> offset (suqiu.streams.catchup)


class ProjectorProcesses:
    """The read-model projector in child processes; child i owns the partitions p with p % n == i.

    A case's events share a partition, so each case is folded by one child, in order, and two
    children never touch the same rows: both decode and fold while the other waits on PostgreSQL.
    """

    def __init__(self, settings: Settings, policy: SlaPolicy, processes: int) -> None:
        self.settings = settings
        self.policy = policy
        self._executors: list[ProcessPoolExecutor | None] = [None] * max(processes, 1)

    async def start(self, now: datetime) -> None:
        """Start every child now rather than on its first batch (a child takes ~1 s to import)."""
        await asyncio.gather(*(self._apply(i, [], now) for i in range(len(self._executors))))

    async def apply(self, records: list[Record], now: datetime) -> Projected:
        """Decode and project `records` as of `now`, once all is committed."""
        shares: list[list[Record]] = [[] for _ in self._executors]
        for record in records:
            shares[record[1] % len(shares)].append(record)
        done = await asyncio.gather(*(self._apply(i, share, now) for i, share in enumerate(shares) if share))
        return Projected([out for d in done for out in d.dead_letters], {p: o for d in done for p, o in d.skip_to.items()})

    async def _apply(self, i: int, records: list[Record], now: datetime) -> Projected:
        loop = asyncio.get_running_loop()
        held = HOLD_FIRST
        while True:
            executor = self._executors[i]
            if executor is None:
                executor = self._executors[i] = worker_pool(1, _start_child, self.settings, self.policy)
            try:
                return await loop.run_in_executor(executor, _apply_in_child, records, now)
            except BrokenProcessPool:
                # Nothing of the batch was acknowledged: a new child applies it again, skipping what it has.
                log.warning("projector process died; starting another", size=len(records))
                executor.shutdown(wait=False, cancel_futures=True)
                self._executors[i] = None
                await asyncio.sleep(1.0)
            except CalendarError as exc:
                # This worker's policy cannot place a deadline the stored events need (the API's
                # policy could): skipping would lose the batch and crashing would loop, so the
                # partitions wait, loudly, until the policy is fixed and the worker restarted.
                log.error("read models held: the SLA policy's calendar cannot place a deadline",
                          reason=exc.message, retry_in=held, size=len(records), **exc.details)
                await asyncio.sleep(held)
                held = min(held * 2, HOLD_MAX)

    def close(self) -> None:
        for i, executor in enumerate(self._executors):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
                self._executors[i] = None


class _Child:
    """What the child process keeps between batches: its loop, its connection, the projector's cache."""

    def __init__(self, settings: Settings, policy: SlaPolicy) -> None:
        assert settings.database_url
        self.loop = asyncio.new_event_loop()
        self.now = datetime.min
        codec = Codec()
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.database_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True})
        self.loop.run_until_complete(self.pool.open(wait=True, timeout=30))
        self.consumer = EventsConsumer(settings, self.pool, codec, Projector(codec, lambda: policy, lambda: self.now))

    def apply(self, records: list[Record], now: datetime) -> Projected:
        self.now = now
        fresh, held = self.loop.run_until_complete(self.consumer.unseen(records))
        good, bad = self.consumer.decode(fresh)
        if good or held:
            self.loop.run_until_complete(self.consumer.project(good, held))
        return Projected(bad, self.loop.run_until_complete(self.consumer.skip_to(records, fresh)))


def _seq(headers: list[tuple[str, bytes]]) -> int | None:
    for name, value in headers:
        if name == "seq":
            try:
                return int(value)
            except ValueError:
                return None  # not ours to trust: the record is decoded and checked as any other
    return None


_child: _Child | None = None


def _start_child(settings: Settings, policy: SlaPolicy) -> None:
    global _child
    _child = _Child(settings, policy)
    settle_gc()


def _apply_in_child(records: list[Record], now: datetime) -> Projected:
    assert _child is not None, "the projector process was not started"
    return _child.apply(records, now)
