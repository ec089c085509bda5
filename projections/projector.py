"""Apply a batch of events to every read model in one transaction, with its checkpoints."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog

from suqiu.domain import events as e
from suqiu.domain.clocks import pending_timers
from suqiu.domain.evolve import evolve
from suqiu.domain.model import Case
from suqiu.domain.sla import SlaPolicy
from suqiu.projections import rows
from suqiu.projections.state import dump_case, load_case
from suqiu.schemas.codec import Codec
from suqiu.store.events import CASE_EVENTS_SQL
from suqiu.store.probes import probe

log = structlog.get_logger(__name__)
NAME = "read-models"
CACHE_SIZE = 50_000

# Whole batches go in as arrays, one statement per table: far cheaper than a statement per row.
CASE_COLUMNS = (
    ("case_id", "text"), ("seq", "int"), ("status", "text"), ("department", "text"), ("jurisdiction", "text"),
    ("category", "text"), ("priority", "text"), ("channel", "text"), ("title", "text"),
    ("enterprise_uscc", "text"), ("enterprise_name", "text"), ("submitted_at", "timestamptz"),
    ("assigned_at", "timestamptz"), ("accept_due", "timestamptz"), ("resolve_due", "timestamptz"),
    ("follow_up_due", "timestamptz"), ("next_due", "timestamptz"), ("warn_at", "timestamptz"),
    ("warned", "bool"), ("breached", "bool"), ("supervised", "bool"), ("reopen_count", "int"),
    ("closed_at", "timestamptz"), ("outcome", "text"), ("rating", "text"), ("state", "jsonb"),
    ("updated_at", "timestamptz"), ("provisional_from", "date"), ("source_system", "text"), ("source_ref", "text"),
)
TIMELINE_COLUMNS = (
    ("case_id", "text"), ("seq", "int"), ("event_id", "uuid"), ("event_type", "text"),
    ("occurred_at", "timestamptz"), ("actor_system", "text"), ("actor_role", "text"),
    ("actor_department", "text"), ("actor_person", "text"), ("data", "jsonb"),
)
TIMER_COLUMNS = (("case_id", "text"), ("clock", "text"), ("kind", "text"), ("fire_at", "timestamptz"),
                 ("due_at", "timestamptz"), ("partition", "int"))


def _bulk_insert(table: str, columns: tuple[tuple[str, str], ...], tail: str = "") -> str:
    """INSERT ... SELECT FROM unnest(arrays), sent in binary; jsonb travels as text, cast on the server."""
    arrays = ", ".join(f"%b::{'text' if t == 'jsonb' else t}[]" for _, t in columns)
    select = ", ".join(f"{n}::jsonb" if t == "jsonb" else n for n, t in columns)
    names = ", ".join(n for n, _ in columns)
    return f"INSERT INTO {table} ({names}) SELECT {select} FROM unnest({arrays}) AS u({names}) {tail}"


# A batch's cases, by index probes (see suqiu.store.probes): the table grows under the projector.
LOCK_CASES = f"SELECT r.case_id, r.seq FROM {probe('case_view', 'case_id', 'case_id, seq', lock=True)}"
READ_STATES = f"SELECT r.case_id, r.state::text FROM {probe('case_view', 'case_id', 'case_id, state')}"
# A case's timers are replaced only where case_view holds the state this batch computed. A stale
# batch (applied after a later one for the same case: a rebalance, a redelivery, two projectors
# briefly sharing a partition) neither leaves timers for a state the view has moved past, such
# as a case since closed, nor deletes the newer state's timers.
_CURRENT = ("unnest(%b::text[], %b::int[]) AS k(case_id, seq) CROSS JOIN LATERAL (SELECT 1 FROM case_view "
            "WHERE case_view.case_id = k.case_id AND case_view.seq = k.seq OFFSET 0) AS v")
# By key, not by ctid: a row the timers rewrite meanwhile (a retry) is a new row version, which a
# delete by the old ctid would skip when it re-checks the row after waiting for its lock.
DELETE_TIMERS = f"DELETE FROM sla_timers WHERE case_id = ANY(ARRAY(SELECT k.case_id FROM {_CURRENT}))"
UPSERT_CASE = _bulk_insert("case_view", CASE_COLUMNS, "ON CONFLICT (case_id) DO UPDATE SET " + ", ".join(
    f"{n} = EXCLUDED.{n}" for n, _ in CASE_COLUMNS[1:]) + " WHERE case_view.seq < EXCLUDED.seq")
INSERT_TIMELINE = _bulk_insert("case_timeline", TIMELINE_COLUMNS, "ON CONFLICT DO NOTHING")
INSERT_TIMERS = _bulk_insert("sla_timers", TIMER_COLUMNS,
                             f"WHERE u.case_id IN (SELECT k.case_id FROM {_CURRENT})")


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


Position = tuple[str, int, int]  # (topic, partition, offset) of a record read


@dataclass(frozen=True, slots=True)
class Incoming:
    """One record from the events topic, decoded once."""

    topic: str
    partition: int
    offset: int
    event: e.Event


# What a case's events can raise on their way into the read models, beside the infrastructure's
# own failures (which propagate, so the batch is retried): a value PostgreSQL refuses, or a fold
# that fails on data it never met. Such a case is quarantined; the others go on.
UNSTORABLE = (psycopg.DataError, psycopg.errors.IntegrityError, ValueError, TypeError, KeyError, OverflowError,
              AssertionError)


class Projector:
    """Case views, timelines, SLA timers and department facts, all from the events topic."""

    def __init__(self, codec: Codec, policy: Callable[[], SlaPolicy], clock: Callable[[], datetime],
                 name: str = NAME) -> None:
        self.codec = codec
        self.policy = policy
        self.clock = clock
        self.name = name
        self._cases: OrderedDict[str, Case] = OrderedDict()

    async def apply(self, conn: psycopg.AsyncConnection[Any], batch: Sequence[Incoming],
                    held: Sequence[Position] = ()) -> int:
        """Apply what is new in `batch`; returns how many events changed something.

        `held` are records read but already reflected (passed over undecoded): their offsets
        move on with the batch's.

        A case whose events the read models cannot take is quarantined (`quarantined_cases`)
        and every other case of the batch is applied: one bad event never empties the read
        models, and none is skipped silently.
        """
        try:
            return await self._apply_whole(conn, batch, held=held)
        except UNSTORABLE as exc:
            log.warning("projector batch refused, applying it case by case", size=len(batch),
                        error=type(exc).__name__)
        by_case: dict[str, list[Incoming]] = defaultdict(list)
        for item in batch:
            by_case[item.event.case_id].append(item)
        applied: dict[tuple[str, int], int] = defaultdict(int)
        for case_id, items in by_case.items():
            try:
                # A case's events share one partition: the record is keyed by case id.
                applied[(items[0].topic, items[0].partition)] += await self._apply_whole(conn, items, checkpoint=False)
            except UNSTORABLE as exc:
                await self._quarantine(conn, case_id, items[0].event.seq, exc)
        async with conn.transaction():
            await self._checkpoint(conn, batch, applied, self.clock(), held)
        return sum(applied.values())

    async def _quarantine(self, conn: psycopg.AsyncConnection[Any], case_id: str, seq: int, exc: Exception) -> None:
        self._cases.pop(case_id, None)
        log.error("case quarantined: the read models cannot store its events", case_id=case_id, seq=seq,
                  error=f"{type(exc).__name__}: {exc}")
        await conn.execute(
            "INSERT INTO quarantined_cases (case_id, seq, error, since) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (case_id) DO UPDATE SET seq = least(quarantined_cases.seq, EXCLUDED.seq), "
            "error = EXCLUDED.error", (case_id, seq, f"{type(exc).__name__}: {exc}"[:2000], self.clock()))

    async def _apply_whole(self, conn: psycopg.AsyncConnection[Any], batch: Sequence[Incoming], *,
                           checkpoint: bool = True, held: Sequence[Position] = ()) -> int:
        while True:
            try:
                async with conn.transaction():
                    if not batch:  # all of it held: only the offsets move
                        await self._checkpoint(conn, batch, {}, self.clock(), held)
                        return 0
                    return await self.apply_in(conn, batch, checkpoint=checkpoint, held=held)
            except psycopg.errors.SerializationFailure:
                continue
            except psycopg.errors.DeadlockDetected:
                await asyncio.sleep(0.01)

    async def apply_in(self, conn: psycopg.AsyncConnection[Any], batch: Sequence[Incoming], *,
                       checkpoint: bool = True, held: Sequence[Position] = ()) -> int:
        """Apply inside the caller's transaction (a rebuild runs many batches in one)."""
        policy, now = self.policy(), self.clock()
        by_case: dict[str, list[Incoming]] = defaultdict(list)
        for item in batch:
            by_case[item.event.case_id].append(item)
        ids = sorted(by_case)
        # Locking the rows serialises two workers that briefly share a partition in a rebalance.
        cur = await conn.execute(LOCK_CASES, (ids,))
        stored: dict[str, int] = dict(await cur.fetchall())
        # A state is read only when the cache does not hold that very seq (after a restart, a rebalance).
        misses = [c for c, seq in stored.items() if (cached := self._cases.get(c)) is None or cached.seq != seq]
        states: dict[str, str] = {}
        if misses:
            cur = await conn.execute(READ_STATES, (misses,))
            states = dict(await cur.fetchall())
        # Taken before any _remember below can evict one of them.
        start = {c: self._state(c, c in stored, states.get(c)) for c in ids}
        timeline: list[tuple[Any, ...]] = []
        cases: list[tuple[Any, ...]] = []
        timers: list[tuple[Any, ...]] = []
        facts: dict[str, list[rows.Fact]] = defaultdict(list)  # per case, in event order
        applied: dict[tuple[str, int], int] = defaultdict(int)
        for case_id in ids:
            case = start[case_id]
            start_seq = case.seq
            partition = by_case[case_id][0].partition
            for item in by_case[case_id]:
                ev = item.event
                if ev.seq <= case.seq:
                    continue  # redelivered: already reflected
                if ev.seq > case.seq + 1:
                    case = await self._fill_gap(conn, case, ev.seq, timeline, facts[case_id], policy)
                case = step(case, ev, timeline, facts[case_id], policy)
                applied[(item.topic, item.partition)] += 1
            if case.seq == start_seq:
                continue
            self._remember(case)
            view, case_timers = view_rows(case, policy, now, _always(partition))
            cases.append(view)
            timers.extend(case_timers)
        async with conn.pipeline():
            if timeline:
                async with conn.cursor() as c:
                    await c.execute(INSERT_TIMELINE, _columns(timeline, len(TIMELINE_COLUMNS)))
                    await c.execute(UPSERT_CASE, _columns(cases, len(CASE_COLUMNS)))
                    current = ([r[0] for r in cases], [r[1] for r in cases])
                    await c.execute(DELETE_TIMERS, current)
                    if timers:
                        await c.execute(INSERT_TIMERS, [*_columns(timers, len(TIMER_COLUMNS)), *current])
                    for round_ in _rounds(facts.values()):
                        for kind, values in round_.items():
                            await c.execute(rows.FACT_SQL[kind], _columns(values, len(values[0])))
                    # In key order, so two projectors adding to the same days lock them in one order.
                    days = sorted(rows.day_rows(f for case_facts in facts.values() for f in case_facts))
                    if days:
                        await c.execute(rows.ADD_DAYS, _columns(days, len(rows.DAY_COLUMNS)))
            if checkpoint:
                await self._checkpoint(conn, batch, applied, now, held)
        return sum(applied.values())

    async def _checkpoint(self, conn: psycopg.AsyncConnection[Any], batch: Sequence[Incoming],
                          applied: dict[tuple[str, int], int], now: datetime, held: Sequence[Position] = ()) -> None:
        heads: dict[tuple[str, int], int] = {}
        for topic, partition, offset in [*((i.topic, i.partition, i.offset) for i in batch), *held]:
            key = (topic, partition)
            heads[key] = max(heads.get(key, -1), offset)
        async with conn.cursor() as c:
            await c.executemany(
                'INSERT INTO projection_offsets (projection, topic, partition, "offset", applied, updated_at) '
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (projection, topic, partition) DO UPDATE SET "
                # Greatest: after a seek past held history (suqiu.streams.catchup), batches read before it may
                # still come, and the checkpoint says how far the read models hold, not what came last.
                '"offset" = greatest(projection_offsets."offset", EXCLUDED."offset"), '
                "applied = projection_offsets.applied + EXCLUDED.applied, "
                "updated_at = EXCLUDED.updated_at",
                [(self.name, t, p, o, applied.get((t, p), 0), now) for (t, p), o in heads.items()],
            )

    async def _fill_gap(self, conn: psycopg.AsyncConnection[Any], case: Case, upto: int,
                        timeline: list[tuple[Any, ...]], facts: list[rows.Fact],
                        policy: SlaPolicy) -> Case:
        """Events missing between the view and what arrived come from the store, the record."""
        cur = await conn.execute(CASE_EVENTS_SQL, (case.case_id, case.seq))
        for (data,) in await cur.fetchall():
            ev = self.codec.decode_event(bytes(data))
            if ev.seq >= upto:
                break
            case = step(case, ev, timeline, facts, policy)
        log.warning("projector filled a gap from the store", case_id=case.case_id, upto=upto)
        return case

    def _state(self, case_id: str, has_row: bool, state: str | None) -> Case:
        if not has_row:
            return Case(case_id=case_id)
        return load_case(state) if state is not None else self._cases[case_id]

    def _remember(self, case: Case) -> None:
        self._cases[case.case_id] = case
        self._cases.move_to_end(case.case_id)
        if len(self._cases) > CACHE_SIZE:
            self._cases.popitem(last=False)


def step(case: Case, ev: e.Event, timeline: list[tuple[Any, ...]], facts: list[rows.Fact],
          policy: SlaPolicy) -> Case:
    """Evolve by one event, collecting its timeline row and department facts."""
    after = evolve(case, ev)
    timeline.append(rows.timeline_row(ev))
    facts.extend(rows.facts(case, ev, after, policy))
    return after


def view_rows(case: Case, policy: SlaPolicy, now: datetime, partition_of: Callable[[str], int]
              ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The case_view row of `case` and its sla_timers rows (timers are owned per partition).

    Most cases are closed and have no timers, so the partition is asked for only when needed.
    """
    pending = pending_timers(case, policy)
    partition = partition_of(case.case_id) if pending else 0
    timers = [(case.case_id, t.clock, t.kind, t.fire_at, t.due_at, partition) for t in pending]
    return rows.case_row(case, pending, dump_case(case), now), timers


def _always(partition: int) -> Callable[[str], int]:
    """A batch's case comes with its partition; a rebuild has to compute it (see view_rows)."""
    return lambda _case_id: partition


def _rounds(per_case: Iterable[list[rows.Fact]]) -> list[dict[type[rows.Fact], list[tuple[Any, ...]]]]:
    """Facts grouped by kind without reordering a case's own: round k holds each case's k-th fact.

    A case's facts depend on each other (an acceptance updates the assignment before it);
    different cases' facts do not, so each round is one statement per kind of fact.
    """
    rounds: list[dict[type[rows.Fact], list[tuple[Any, ...]]]] = []
    for facts in per_case:
        for i, fact in enumerate(f for f in facts if type(f) in rows.FACT_SQL):  # some only add to the days
            if i == len(rounds):
                rounds.append(defaultdict(list))
            kind = type(fact)
            rounds[i][kind].append(rows.FACT_VALUES[kind](fact))
    return rounds
