"""Transactional outbox relay: stored events to appeals.events.v1, per-case order, at least once.

One relay is active per database schema (an advisory lock); others wait as standbys. It
drains on NOTIFY (no busy polling) and, because the embedded broker keeps nothing on disk,
it checks that the broker still holds its epoch marker and republishes everything when not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from enum import Enum
from typing import Any

import psycopg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from suqiu.base.config import Settings
from suqiu.store.events import NOTIFY_CHANNEL
from suqiu.store.probes import delete_by
from suqiu.streams.catchup import HeldPrefix, held_seqs
from suqiu.streams.publishing import publish, stored_record
from suqiu.streams.topics import TopicLayoutError, ensure_topics, feed_topic, partition_for, recreate

log = structlog.get_logger(__name__)
Acked = tuple[list[int], dict[int, int]]  # published positions, and the highest offset per partition
LOCK_ID = 0x5351_0002
QUIET_S = 2.0  # reading the epoch marker: no new record for this long means none is coming
# Probed: after a broker loss the outbox holds the whole history (suqiu.store.probes).
FORGET_SENT = (f"WITH sent AS ({delete_by('outbox', 'position', key_type='bigint')}) "
               'INSERT INTO relay_offsets (topic, partition, "offset") SELECT %s, p, o '
               "FROM unnest(%s::int[], %s::bigint[]) AS h(p, o) "
               'ON CONFLICT (topic, partition) DO UPDATE SET "offset" = EXCLUDED."offset"')
EPOCH_SQL = ("INSERT INTO relay_state (topic, epoch, republished_at, republish_open) VALUES (%s, %s, now(), %s) "
             "ON CONFLICT (topic) DO UPDATE SET epoch = EXCLUDED.epoch, republished_at = now(), "
             "republish_open = EXCLUDED.republish_open")


class Broker(Enum):
    """What the relay found on the broker (OutboxRelay.check_broker)."""

    HOLDS = "the broker holds what was published to it"
    NEW_STORE = "a store never published: it is queued whole"
    LOST = "the broker lost what was published: its topics are new and the store is queued again"


class OutboxRelay:
    def __init__(self, settings: Settings, *, batch: int = 1000, check_every: float = 5.0,
                 idle_wait: float = 1.0, settle: float = 0.05, linger: float = 0.005) -> None:
        assert settings.database_url and settings.kafka_bootstrap
        self.settings = settings
        self.topic = settings.events_topic
        self.marker_topic = settings.topic("appeals.relay-epoch.v1")
        self.batch = batch
        self.check_every = check_every
        self.idle_wait = idle_wait
        self.settle = settle
        self.linger = linger
        self.republished = 0
        self.catchup: HeldPrefix | None = None  # during a republish: how much the read models hold
        self.epoch: str | None = None  # the token this relay last left on the broker

    async def run(self) -> None:
        """Relay until cancelled; reconnects after broker and database failures."""
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except TopicLayoutError as exc:
                log.error("relay held: the events topic is not shaped as configured", error=str(exc))
                await asyncio.sleep(5.0)
            except (KafkaError, psycopg.OperationalError, OSError) as exc:
                log.warning("relay interrupted, retrying", error=str(exc), topic=self.topic)
                await asyncio.sleep(1.0)

    async def _run_once(self) -> None:
        assert self.settings.database_url and self.settings.kafka_bootstrap
        async with await psycopg.AsyncConnection.connect(self.settings.database_url, autocommit=True) as conn:
            await self._acquire(conn)
            # Nothing the relay commits needs to survive a crash: a forgotten delete republishes
            # (at least once) and a forgotten epoch republishes everything. Waiting for the WAL
            # flush on every batch was most of the publish lag under write load.
            await conn.execute("SET synchronous_commit = off")
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap, acks="all", linger_ms=2,
                max_batch_size=512 * 1024, request_timeout_ms=10000, **self.settings.kafka_security.client_kwargs(),
            )
            await producer.start()
            probe: asyncio.Task[set[str]] | None = None
            try:
                if await self.check_broker(conn, producer) is Broker.LOST:
                    return  # run() reconnects: this producer still has the old topics' metadata
                loop = asyncio.get_running_loop()
                next_check = loop.time() + self.check_every
                acked: Acked | None = None
                while True:
                    moved, acked = await self._drain(conn, producer, acked)
                    # Reading the marker topic takes a consumer's start-up time: never on the hot path.
                    if probe is None and loop.time() >= next_check:
                        probe = asyncio.create_task(self.broker_epochs(self.epoch))
                    if probe is not None and probe.done():
                        found = await self.check_broker(conn, producer, probe.result())
                        if found is Broker.LOST:
                            return  # run() reconnects: this producer still has the old topics' metadata
                        if found is Broker.NEW_STORE:
                            acked = None  # queued again with everything else
                        probe, next_check = None, loop.time() + self.check_every
                    if moved < self.batch:
                        # The read took everything queued, so wait for news rather than read again: each
                        # round trip costs more CPU here than the rows it carries. A NOTIFY that came during
                        # the batch is already waiting. An acknowledged batch not yet forgotten (its
                        # offsets not yet in relay_offsets) only waits `settle`.
                        timeout = self.idle_wait if acked is None else self.settle
                        woken = False
                        async for _ in conn.notifies(timeout=timeout, stop_after=1):
                            woken = True
                        if woken and self.linger:
                            # Let the commits of the next few milliseconds join this batch: every
                            # cycle wakes PostgreSQL and the broker, and at a moderate rate a cycle
                            # per commit cost more CPU than the whole command path.
                            await asyncio.sleep(self.linger)
                            async for _ in conn.notifies(timeout=0):
                                pass  # those commits' wake-ups: this read covers them
            finally:
                if probe is not None:
                    probe.cancel()
                await producer.stop()

    async def _acquire(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (LOCK_ID,))
            row = await cur.fetchone()
            if row and row[0]:
                log.info("relay active", topic=self.topic)
                return
            await asyncio.sleep(1.0)

    async def _drain(self, conn: psycopg.AsyncConnection[Any], producer: AIOKafkaProducer,
                     acked: Acked | None) -> tuple[int, Acked | None]:
        """Forget the last acknowledged batch and read the next in one round trip; publish it.

        Returns how many outbox rows were handled and their acknowledgement, forgotten next time: a crash
        in between republishes them (at least once), and an empty read has forgotten them.
        """
        async with conn.pipeline():
            if acked is not None:
                positions, heads = acked
                # The heads let /v1/health report how far the read models trail the topic.
                await conn.execute(FORGET_SENT, (positions, self.topic, list(heads), list(heads.values())),
                                   prepare=True)
            # One index probe per queued event. A plain join let the planner pick a merge join that
            # walked events from position 1 on every batch (see BENCHMARKS.md).
            cur = await conn.execute(
                "SELECT o.position, e.case_id, e.seq, e.data, e.event_type, e.event_id::text, e.occurred_at "
                "FROM (SELECT position FROM outbox ORDER BY position LIMIT %s) o LEFT JOIN LATERAL "
                "(SELECT case_id, seq, data, event_type, event_id, occurred_at FROM events "
                "WHERE events.position = o.position OFFSET 0) e ON true ORDER BY o.position",
                (self.batch,), prepare=True,
            )
        queued = await cur.fetchall()
        if not queued:
            if self.catchup is not None:  # a republish that filled its last batch exactly
                await self._mark_held(conn, [], {}, drained=True)
            return 0, None
        # The outbox has no foreign key (it cost a check per stored event); a queued position
        # whose event is gone means someone deleted from the store, which verify will name.
        handled = [r[0] for r in queued]
        rows = [r for r in queued if r[1] is not None]
        if len(rows) < len(queued):
            log.error("outbox position without its event: the event store was edited; run suqiu replay verify",
                      positions=[r[0] for r in queued if r[1] is None])
        if not rows:
            return len(handled), (handled, {})
        started = time.perf_counter()
        placed = await publish(producer, self.topic, [stored_record(self.settings.system_id, *r[1:]) for r in rows], self.settings.partitions)
        heads = {p: offsets[-1] for p, offsets in placed.items()}
        if self.catchup is not None:
            await self._mark_held(conn, rows, placed, drained=len(queued) < self.batch)
        log.debug("relayed", count=len(rows), last_position=rows[-1][0],
                  publish_ms=round((time.perf_counter() - started) * 1000, 1))
        return len(handled), (handled, heads)

    async def _mark_held(self, conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]],
                         placed: dict[int, list[int]], drained: bool) -> None:
        """During a republish: how far each partition's history is already in the read models
        (streams/catchup.py), so the projector can skip there."""
        assert self.catchup is not None
        shares: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for r in rows:
            shares[partition_for(r[1], self.settings.partitions)].append((r[1], r[2]))
        held = await held_seqs(conn, {r[1] for r in rows}) if rows else {}
        marks = self.catchup.advance(shares, placed, held)
        done = drained or not self.catchup.open  # the republished history is behind us: what follows is new
        await self.catchup.record(conn, self.topic, marks, done=done)
        if done:
            self.catchup = None

    async def broker_epochs(self, looking_for: str | None = None) -> set[str]:
        """The epoch tokens on the marker topic (empty when the topic is gone).

        Reads until `looking_for` is among them, or until nothing more came for QUIET_S: a
        consumer's first fetches on a busy machine can come back empty, and stopping at the
        first empty one made a broker that holds the epoch look like one that lost it.
        """
        assert self.settings.kafka_bootstrap
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **self.settings.kafka_security.client_kwargs())
        await consumer.start()
        try:
            if self.marker_topic not in await consumer.topics():
                return set()
            tp = TopicPartition(self.marker_topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            tokens: set[str] = set()
            loop = asyncio.get_running_loop()
            quiet_since = loop.time()
            while looking_for not in tokens and loop.time() - quiet_since < QUIET_S:
                batch = await consumer.getmany(tp, timeout_ms=200)
                if batch.get(tp):
                    tokens.update(r.value.decode() for r in batch[tp] if r.value)
                    quiet_since = loop.time()
            return tokens
        finally:
            await consumer.stop()

    async def check_broker(self, conn: psycopg.AsyncConnection[Any], producer: AIOKafkaProducer,
                           epochs: set[str] | None = None) -> Broker:
        """Republish the whole store when the broker no longer holds our epoch marker.

        The embedded broker forgets everything on restart, and its ListOffsets answers are
        not reliable, so the relay leaves a token on a marker topic and in PostgreSQL; a
        broker without the token is a broker that lost what was published to it.
        """
        cur = await conn.execute("SELECT epoch, republish_open FROM relay_state WHERE topic = %s", (self.topic,))
        row = await cur.fetchone()
        epoch, republishing = row if row else (None, None)
        self.epoch = epoch
        if epochs is None:
            epochs = await self.broker_epochs(epoch)
        if epoch is not None and epoch in epochs:
            if republishing is not None and self.catchup is None:
                # Taking over a republish another relay (or this one, before a crash) began.
                self.catchup = HeldPrefix(republishing)
            return Broker.HOLDS
        if epoch is None:
            # A new store: nothing was lost, so this is not worth a warning.
            log.info("first relay start on this store: publishing it and marking the broker", topic=self.topic)
        else:
            log.warning("broker does not hold the relay's epoch: republishing the store", topic=self.topic,
                        epoch=epoch)
        await ensure_topics(self.settings, extra=[self.marker_topic])
        if epoch is not None:
            # The broker lost what we published; anything on these topics now came from clients
            # that kept sending meanwhile. Only topics rebuilt from the store are created again
            # (never the commands topic, whose records exist nowhere else).
            await recreate(self.settings, [self.topic, *(feed_topic(self.settings, j)
                                                         for j in self.settings.jurisdiction_feeds)])
        new_epoch = uuid.uuid4().hex
        await (await producer.send(self.marker_topic, value=new_epoch.encode(), partition=0))
        async with conn.transaction():
            await conn.execute("INSERT INTO outbox (position) SELECT position FROM events ON CONFLICT DO NOTHING")
            # The old broker's offsets mean nothing on the new topic: until the projector's first
            # checkpoint there, /v1/health and the lag metric count the whole republish as lag
            # (the checkpoint keeps its count of events applied).
            if epoch is not None:
                await conn.execute("DELETE FROM relay_offsets WHERE topic = %s", (self.topic,))
                await conn.execute('UPDATE projection_offsets SET "offset" = -1 WHERE topic = %s', (self.topic,))
            await conn.execute("DELETE FROM republished_held WHERE topic = %s", (self.topic,))
            every = list(range(self.settings.partitions))
            await conn.execute(EPOCH_SQL, (self.topic, new_epoch, every))
        self.epoch = new_epoch
        self.catchup = HeldPrefix(every)
        self.republished += 1
        return Broker.NEW_STORE if epoch is None else Broker.LOST


async def run_relay(settings: Settings) -> None:
    relay = OutboxRelay(settings)
    with contextlib.suppress(asyncio.CancelledError):
        await relay.run()
