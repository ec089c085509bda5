"""The outbox relay under failure: killed mid-stream, and a broker that comes back empty."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.base import Format
from structlog.testing import capture_logs

from suqiu.base.config import Settings
from suqiu.domain.model import Actor, Role
from suqiu.schemas.codec import Codec
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime
from suqiu.stack.embedded import EmbeddedBroker
from suqiu.streams.publishing import STORED_COLUMNS, publish, publish_held, stored_record
from suqiu.streams.relay import OutboxRelay
from suqiu.streams.topics import ensure_topics, partition_for
from tests.conftest import SYSTEM, submission
from tests.support.kafka import read_topic

DISPATCHER = Actor(SYSTEM, Role.DISPATCHER)


async def write_cases(runtime: Runtime, cases: int, urges: int) -> int:
    """Submit `cases` appeals, dispatch each and urge it `urges` times; returns events written."""
    svc = runtime.service
    ids = []
    for _ in range(cases):
        body = submission()
        cid = body.pop("command_id")
        ids.append((await svc.execute(CommandRequest("submit", cid, Actor(SYSTEM, Role.INTAKE), body))).case_id)
    for case in ids:
        await svc.execute(CommandRequest("dispatch", str(uuid.uuid4()), DISPATCHER, {"department": "bh-market"},
                                         case_id=case))
    for i in range(urges):
        for case in ids:
            await svc.execute(CommandRequest("urge", str(uuid.uuid4()), DISPATCHER, {"note": f"第{i}次"}, case_id=case))
    return cases * (2 + urges)


async def keep_writing(runtime: Runtime, cases: int, stop: asyncio.Event) -> int:
    """Write urges round after round until `stop`; returns events written."""
    written = await write_cases(runtime, cases, 0)
    ids = await case_ids(runtime)
    while not stop.is_set():
        for case in ids[-cases:]:
            await runtime.service.execute(CommandRequest("urge", str(uuid.uuid4()), DISPATCHER, {}, case_id=case))
            written += 1
    return written


async def case_ids(runtime: Runtime) -> list[str]:
    async with runtime.pool.connection() as conn:
        cur = await conn.execute("SELECT case_id FROM events WHERE seq = 1 ORDER BY position")
        return [r[0] for r in await cur.fetchall()]


def assert_complete_and_ordered(records: list, expected: int, partitions: int) -> None:
    """Every event present, on its case's partition; per case, each first appearance follows its predecessor's."""
    codec = Codec()
    seen: dict[str, list[int]] = defaultdict(list)
    for r in records:
        ev = codec.decode_event(r.value)
        assert ev.case_id == r.key.decode()
        assert r.partition == partition_for(ev.case_id, partitions), "keyed by another partition count"
        first = seen[ev.case_id]
        if ev.seq in first:
            continue  # an at-least-once repeat after a resend
        assert ev.seq == len(first) + 1, f"{ev.case_id}: seq {ev.seq} arrived after {first[-3:]}"
        first.append(ev.seq)
    assert sum(len(v) for v in seen.values()) == expected


async def test_relay_killed_mid_stream_and_restarted_loses_nothing(topics: Settings, runtime: Runtime) -> None:
    s = topics
    assert s.kafka_bootstrap
    env = {**os.environ, **s.to_env()}
    total = await write_cases(runtime, 40, 3)
    stop = asyncio.Event()
    relay = subprocess.Popen([sys.executable, "-m", "suqiu", "relay"], env=env, stderr=subprocess.DEVNULL)
    writer = asyncio.create_task(keep_writing(runtime, 20, stop))
    await asyncio.sleep(2.0)
    relay.send_signal(signal.SIGKILL)  # no goodbye: whatever was in flight is in flight
    relay.wait()
    assert not writer.done(), "the kill must land while events are still being written"
    await asyncio.sleep(1.0)
    stop.set()
    total += await writer
    relay = subprocess.Popen([sys.executable, "-m", "suqiu", "relay"], env=env, stderr=subprocess.DEVNULL)
    try:
        records = await read_topic(s.kafka_bootstrap, s.events_topic, total, timeout=60)
    finally:
        relay.terminate()
        relay.wait()
    assert_complete_and_ordered(records, total, s.partitions)


async def test_broker_restarted_empty_gets_the_whole_history_again(settings: Settings, runtime: Runtime) -> None:
    broker = EmbeddedBroker()
    broker.start()
    s = settings.with_(kafka_bootstrap=broker.bootstrap)
    await ensure_topics(s)
    relay = OutboxRelay(s, check_every=0.5)
    task = asyncio.create_task(relay.run())
    try:
        first = await write_cases(runtime, 10, 2)
        assert len(await read_topic(s.kafka_bootstrap or "", s.events_topic, first)) >= first
        broker.stop()
        # Commands keep being accepted while the broker is down: the store is the record.
        during = await write_cases(runtime, 5, 1)
        await asyncio.sleep(1.0)
        broker = EmbeddedBroker(port=broker.port)
        broker.start()
        # The relay noticed, and created the events topic again, empty and shaped as configured:
        # what reached it meanwhile (a batch sent before the broker went, the topic made by a
        # client's metadata request with the broker's own partition count) is gone.
        for _ in range(600):
            if relay.republished >= 2:  # the first start, and the empty broker
                break
            await asyncio.sleep(0.1)
        records = await read_topic(s.kafka_bootstrap or "", s.events_topic, first + during, timeout=60)
        assert_complete_and_ordered(records, first + during, s.partitions)
        assert len(records) == first + during  # published once, onto the new topic
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()


async def test_a_queued_event_deleted_from_the_store_does_not_stall_the_relay(topics: Settings, runtime: Runtime) -> None:
    s = topics
    assert s.kafka_bootstrap
    first = await write_cases(runtime, 3, 0)
    async with runtime.pool.connection() as conn:
        # Someone with superuser rights removes a case's last event before it was published.
        cur = await conn.execute("DELETE FROM events WHERE position = (SELECT max(position) FROM events) "
                                 "RETURNING position")
        row = await cur.fetchone()
        assert row is not None
        gone = row[0]
    later = await write_cases(runtime, 2, 1)
    task = asyncio.create_task(OutboxRelay(s).run())
    try:
        records = await read_topic(s.kafka_bootstrap, s.events_topic, first - 1 + later, timeout=30)
        assert len({(r.partition, r.offset) for r in records}) == first - 1 + later
        async with runtime.pool.connection() as conn:
            for _ in range(50):
                cur = await conn.execute("SELECT count(*) FROM outbox")
                left = await cur.fetchone()
                if left is not None and left[0] == 0:
                    break
                await asyncio.sleep(0.1)
            assert left == (0,), f"outbox still holds {left}; the deleted event's position was {gone}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_publish_sends_each_partition_as_whole_batches_in_order(topics: Settings, runtime: Runtime) -> None:
    # Small batches, so each partition's share takes several, each sent after the one before it.
    s = topics
    assert s.kafka_bootstrap
    total = await write_cases(runtime, 30, 12)
    async with runtime.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {STORED_COLUMNS} FROM events ORDER BY position")
        rows = await cur.fetchall()
    assert len(rows) == total
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", max_batch_size=4 * 1024)
    await producer.start()
    try:
        placed = await publish(producer, s.events_topic, [stored_record(s.system_id, *r) for r in rows], s.partitions)
    finally:
        await producer.stop()
    records = await read_topic(s.kafka_bootstrap, s.events_topic, total)
    assert len(records) == total  # each row once: nothing retried here
    assert_complete_and_ordered(records, total, s.partitions)
    codec, where = Codec(), dict[int, list[int]]()
    for r in records:
        where.setdefault(r.partition, []).append(r.offset)
        assert dict(r.headers)["event_id"].decode() == codec.decode_event(r.value).event_id
    assert placed == where  # each record's offset, in the order given
    for p in placed:  # each partition's share did not fit one batch
        assert sum(len(r.value) for r in records if r.partition == p) > 2 * 4 * 1024


async def test_a_batch_the_broker_does_not_take_is_held_until_it_does(settings: Settings, runtime: Runtime) -> None:
    # What a feed agent does with a batch: its offsets move only after publish_held returns.
    broker = EmbeddedBroker()
    broker.start()
    assert broker.proc
    s = settings.with_(kafka_bootstrap=broker.bootstrap)
    await ensure_topics(s)
    total = await write_cases(runtime, 6, 2)
    async with runtime.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {STORED_COLUMNS} FROM events ORDER BY position")
        records = [stored_record(s.system_id, *r) for r in await cur.fetchall()]
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=1000)
    await producer.start()
    try:
        broker.proc.send_signal(signal.SIGSTOP)  # unanswering, its topics kept
        with capture_logs() as logs:
            held = asyncio.create_task(publish_held(producer, {s.events_topic: records}, s.partitions))
            await asyncio.sleep(3.0)
            assert not held.done()
            broker.proc.send_signal(signal.SIGCONT)
            await asyncio.wait_for(held, 60)
        assert any(e["event"] == "the broker did not take a batch; holding it" for e in logs)
        published = await read_topic(broker.bootstrap, s.events_topic, total)
        assert_complete_and_ordered(published, total, s.partitions)  # repeats allowed: at least once
    finally:
        broker.proc.send_signal(signal.SIGCONT)
        await producer.stop()
        broker.stop()


class AvroData(Format):
    """The CloudEvents SDK reads the record's value as Suqiu's Avro single-object bytes."""

    codec = Codec()

    def read(self, event_klass: Any, data: str | bytes) -> Any:
        raise NotImplementedError("binary mode only")

    def write(self, event: Any) -> bytes:
        raise NotImplementedError("binary mode only")

    def write_data(self, data: Any, datacontenttype: str | None) -> bytes:
        raise NotImplementedError("binary mode only")

    def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
        return self.codec.decode_event(body)

    def get_content_type(self) -> str:
        return "avro/binary"


async def test_every_record_reads_as_a_cloudevent_with_the_sdks_kafka_binding(topics: Settings, runtime: Runtime) -> None:
    s = topics
    assert s.kafka_bootstrap
    total = await write_cases(runtime, 3, 1)
    relay = subprocess.Popen([sys.executable, "-m", "suqiu", "relay"], env={**os.environ, **s.to_env()},
                             stderr=subprocess.DEVNULL)
    try:
        records = await read_topic(s.kafka_bootstrap, s.events_topic, total, timeout=60)
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)
    assert len(records) == total
    fingerprints = {info.name: info.fingerprint for info in Codec().current.values()}
    types = set()
    for r in records:
        event = from_binary(KafkaMessage(dict(r.headers), r.key, r.value), AvroData())
        stored = event.get_data()
        assert event.get_specversion() == "1.0" and event.get_id() == stored.event_id
        assert event.get_source() == f"/suqiu/{s.system_id}/cases/{stored.case_id}"
        assert event.get_subject() == stored.case_id == r.key.decode()
        assert event.get_time() == stored.occurred_at
        assert event.get_datacontenttype() == \
            f"avro/binary; fingerprint={fingerprints['suqiu.events.' + stored.event_type]}"
        types.add(event.get_type())
    assert types == {"cn.suqiu.appeal.submitted.v1", "cn.suqiu.appeal.dispatched.v1", "cn.suqiu.urged.v1"}
