"""Apply a batch of events to every read model in one transaction, with its checkpoints."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg.types.json import Jsonb

from projections import rows
from projections.state import dump_case, load_case
from schemas.codec import Codec
from suqiu.domain import events as e
from suqiu.domain.clocks import pending_timers
from suqiu.domain.evolve import evolve
from suqiu.domain.model import Case
from suqiu.domain.sla import SlaPolicy
from suqiu.store.events import CASE_EVENTS_SQL

log = structlog.get_logger(__name__)
NAME = "read-models"
CACHE_SIZE = 50_000

UPSERT_CASE = (
    "INSERT INTO case_view (case_id, seq, status, department, jurisdiction, category, priority, channel, title, "
    "enterprise_uscc, enterprise_name, submitted_at, assigned_at, accept_due, resolve_due, follow_up_due, "
    "next_due, warn_at, warned, breached, supervised, reopen_count, closed_at, outcome, rating, state, updated_at) "
    "VALUES (" + ", ".join(["%s"] * 25) + ", %s::jsonb, %s) "
    "ON CONFLICT (case_id) DO UPDATE SET " + ", ".join(
        f"{c} = EXCLUDED.{c}" for c in (
            "seq", "status", "department", "jurisdiction", "category", "priority", "channel", "title",
            "enterprise_uscc", "enterprise_name", "submitted_at", "assigned_at", "accept_due", "resolve_due",
            "follow_up_due", "next_due", "warn_at", "warned", "breached", "supervised", "reopen_count",
            "closed_at", "outcome", "rating", "state", "updated_at")
    ) + " WHERE case_view.seq < EXCLUDED.seq"
)
INSERT_TIMELINE = (
    "INSERT INTO case_timeline (case_id, seq, event_id, event_type, occurred_at, actor_system, actor_role, "
    "actor_department, actor_person, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
INSERT_TIMER = ("INSERT INTO sla_timers (case_id, clock, kind, fire_at, due_at, partition) "
                "VALUES (%s, %s, %s, %s, %s, %s)")


@dataclass(frozen=True, slots=True)
class Incoming:
    """One record from the events topic, decoded once."""

    topic: str
    partition: int
    offset: int
    event: e.Event


class Projector:
    """Case views, timelines, SLA timers and department facts, all from the events topic."""

    def __init__(self, codec: Codec, policy: Callable[[], SlaPolicy], clock: Callable[[], datetime],
                 name: str = NAME) -> None:
        self.codec = codec
        self.policy = policy
        self.clock = clock
        self.name = name
        self._cases: OrderedDict[str, Case] = OrderedDict()

    async def apply(self, conn: psycopg.AsyncConnection[Any], batch: Sequence[Incoming]) -> int:
        """Apply what is new in `batch`; returns how many events changed something."""
        while True:
            try:
                async with conn.transaction():
                    return await self.apply_in(conn, batch)
            except psycopg.errors.SerializationFailure:
                continue
            except psycopg.errors.DeadlockDetected:
                await asyncio.sleep(0.01)

    async def apply_in(self, conn: psycopg.AsyncConnection[Any], batch: Sequence[Incoming], *,
                       checkpoint: bool = True) -> int:
        """Apply inside the caller's transaction (a rebuild runs many batches in one)."""
        policy, now = self.policy(), self.clock()
        by_case: dict[str, list[Incoming]] = defaultdict(list)
        for item in batch:
            by_case[item.event.case_id].append(item)
        ids = sorted(by_case)
        # Locking the rows serialises two workers that briefly share a partition in a rebalance.
        cur = await conn.execute(
            "SELECT case_id, seq, state::text FROM case_view WHERE case_id = ANY(%s) ORDER BY case_id FOR UPDATE",
            (ids,))
        stored = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
        timeline: list[tuple[Any, ...]] = []
        cases: list[tuple[Any, ...]] = []
        timers: list[tuple[Any, ...]] = []
        fact_rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        applied: dict[tuple[str, int], int] = defaultdict(int)
        for case_id in ids:
            case = self._state(case_id, stored.get(case_id))
            start_seq = case.seq
            partition = by_case[case_id][0].partition
            for item in by_case[case_id]:
                ev = item.event
                if ev.seq <= case.seq:
                    continue  # redelivered: already reflected
                if ev.seq > case.seq + 1:
                    case = await self._fill_gap(conn, case, ev.seq, timeline, fact_rows, policy)
                before, case = case, evolve(case, ev)
                timeline.append(rows.timeline_row(ev))
                for fact in rows.facts(before, ev, case, policy):
                    fact_rows[fact.sql].append(fact.params)
                applied[(item.topic, item.partition)] += 1
            if case.seq == start_seq:
                continue
            self._remember(case)
            cases.append(rows.case_row(case, policy, dump_case(case), now))
            timers.extend((case_id, t.clock, t.kind, t.fire_at, t.due_at, partition)
                          for t in pending_timers(case, policy))
        async with conn.pipeline():
            if timeline:
                async with conn.cursor() as c:
                    await c.executemany(INSERT_TIMELINE, [(*r[:-1], Jsonb(r[-1])) for r in timeline])
                    await c.executemany(UPSERT_CASE, cases)
                    await c.execute("DELETE FROM sla_timers WHERE case_id = ANY(%s)", ([r[0] for r in cases],))
                    if timers:
                        await c.executemany(INSERT_TIMER, timers)
                    for sql, params in fact_rows.items():
                        await c.executemany(sql, params)
            if checkpoint:
                await self._checkpoint(conn, batch, applied, now)
        return sum(applied.values())

    async def _checkpoint(self, conn: psycopg.AsyncConnection[Any], batch: Sequence[Incoming],
                          applied: dict[tuple[str, int], int], now: datetime) -> None:
        heads: dict[tuple[str, int], int] = {}
        for item in batch:
            key = (item.topic, item.partition)
            heads[key] = max(heads.get(key, -1), item.offset)
        async with conn.cursor() as c:
            await c.executemany(
                'INSERT INTO projection_offsets (projection, topic, partition, "offset", applied, updated_at) '
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (projection, topic, partition) DO UPDATE SET "
                '"offset" = EXCLUDED."offset", applied = projection_offsets.applied + EXCLUDED.applied, '
                "updated_at = EXCLUDED.updated_at",
                [(self.name, t, p, o, applied.get((t, p), 0), now) for (t, p), o in heads.items()],
            )

    async def _fill_gap(self, conn: psycopg.AsyncConnection[Any], case: Case, upto: int,
                        timeline: list[tuple[Any, ...]], fact_rows: dict[str, list[tuple[Any, ...]]],
                        policy: SlaPolicy) -> Case:
        """Events missing between the view and what arrived come from the store, the record."""
        cur = await conn.execute(CASE_EVENTS_SQL, (case.case_id, case.seq))
        for (data,) in await cur.fetchall():
            ev = self.codec.decode_event(bytes(data))
            if ev.seq >= upto:
                break
            before, case = case, evolve(case, ev)
            timeline.append(rows.timeline_row(ev))
            for fact in rows.facts(before, ev, case, policy):
                fact_rows[fact.sql].append(fact.params)
        log.warning("projector filled a gap from the store", case_id=case.case_id, upto=upto)
        return case

    def _state(self, case_id: str, stored: tuple[int, str] | None) -> Case:
        if stored is None:
            return Case(case_id=case_id)
        cached = self._cases.get(case_id)
        if cached is not None and cached.seq == stored[0]:
            return cached
        return load_case(stored[1])

    def _remember(self, case: Case) -> None:
        self._cases[case.case_id] = case
        self._cases.move_to_end(case.case_id)
        if len(self._cases) > CACHE_SIZE:
            self._cases.popitem(last=False)

    def forget(self) -> None:
        """Drop the cache (after a rebuild the rows are the truth)."""
        self._cases.clear()
