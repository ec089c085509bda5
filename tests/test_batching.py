"""The agents' batching: a batch is acknowledged only after its handler returned."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from typing import Any

import faust
from faust.types import EventT

from suqiu.base.config import Settings
from suqiu.streams.batching import Batcher
from tests.support.kafka import produce


def _app(settings: Settings, group: str, datadir: str) -> faust.App:
    return faust.App(group, broker=f"kafka://{settings.kafka_bootstrap}", store="memory://",
                     datadir=datadir, consumer_auto_offset_reset="earliest", web_enabled=False,
                     topic_partitions=settings.partitions, broker_commit_interval=0.1, stream_wait_empty=False,
                     broker_session_timeout=10.0, broker_heartbeat_interval=1.0, broker_rebalance_timeout=10.0)


async def _run(settings: Settings, group: str, handle: Any, until: asyncio.Event) -> list[BaseException]:
    """One app in `group` whose agent hands batches of 4 to `handle`; returns what ended its agent."""
    datadir = tempfile.TemporaryDirectory(prefix="suqiu-test-faust-")
    app = _app(settings, group, datadir.name)
    topic = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    ended: list[BaseException] = []

    @app.agent(topic)
    async def agent(stream: faust.StreamT[bytes]) -> None:
        try:
            await Batcher(stream, handle, size=4, within=0.05).run()
        except Exception as exc:
            ended.append(exc)
            until.set()
            raise

    app.finalize()
    await app.start()
    try:
        await asyncio.wait_for(until.wait(), 20)
        await asyncio.sleep(0.5)  # several commit intervals: whatever was acknowledged is committed
    finally:
        await app.stop()
        datadir.cleanup()
    return ended


async def test_a_failing_handler_ends_the_agent_and_its_batch_is_delivered_again(topics: Settings) -> None:
    s = topics
    assert s.kafka_bootstrap
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(12)]
    await produce(s.kafka_bootstrap, s.events_topic, sent)
    group = f"batcher-{uuid.uuid4().hex}"
    failed_once, seen = asyncio.Event(), []

    async def fail(batch: list[EventT]) -> None:
        raise RuntimeError(f"handler failed on {len(batch)} events")

    ended = await _run(s, group, fail, failed_once)
    # Faust restarts a crashed agent; it fails again on the same unacknowledged records.
    assert ended and all(isinstance(e, RuntimeError) and "handler failed" in str(e) for e in ended), ended

    # The same group again: nothing was acknowledged, so every record comes back.
    all_seen = asyncio.Event()

    async def keep(batch: list[EventT]) -> None:
        seen.extend(ev.value for ev in batch)
        if len(seen) >= len(sent):
            all_seen.set()

    assert await _run(s, group, keep, all_seen) == []
    assert sorted(seen) == sorted(v for _, v in sent)

    # And a third run finds everything acknowledged: nothing is delivered twice.
    late: list[bytes] = []
    quiet = asyncio.Event()

    async def record(batch: list[EventT]) -> None:
        late.extend(ev.value for ev in batch)

    asyncio.get_running_loop().call_later(5.0, quiet.set)
    await _run(s, group, record, quiet)
    assert late == []
