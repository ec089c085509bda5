"""The Faust app factory: agents and services for one worker, nothing created at import."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaProducer
from faust.sensors import Monitor
from faust.types import TP, EventT, Message, StreamT
from mode import Service

from streams.batching import Batcher
from streams.federation import FederationBridge
from streams.feeds import JurisdictionFeeds
from streams.intake import CommandIntake
from streams.projecting import ProjectorProcesses, Record
from streams.publishing import publish_held
from streams.relay import run_relay
from streams.sla import SlaTimers, roll_out_policy
from suqiu.config import Settings
from suqiu.runtime import Runtime

log = structlog.get_logger(__name__)


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-message statistics.

    They feed Faust's web view and metrics sensors, which a Suqiu worker does not run, and cost
    a few µs on every event; the offset and commit tracking Faust reads back is kept.
    """

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any],
                            state: dict[str, Any] | None = None) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        return None


class RuntimeService(Service):
    """Opens the process's Runtime with the worker and closes it on stop."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.ready = asyncio.Event()

    async def on_start(self) -> None:
        await self.runtime.open()
        self.ready.set()

    async def on_stop(self) -> None:
        await self.runtime.close()


def _header_pairs(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """Faust hands headers over as a mapping or as pairs, depending on the code path."""
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def _record(ev: EventT[Any]) -> Record:
    m = ev.message
    return m.topic, m.partition, m.offset, ev.key, ev.value, _header_pairs(ev.headers)


def create_app(settings: Settings, runtime: Runtime | None = None) -> faust.App:
    """A Faust app for `settings`; pass a runtime to inject a clock or policy (tests)."""
    settings.require()
    faust_dir = Path(tempfile.gettempdir()) / "suqiu-faust"
    faust_dir.mkdir(exist_ok=True)
    app = faust.App(
        f"suqiu-{settings.topic_prefix}{settings.system_id}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        # Nothing durable lives in a worker (the store is PostgreSQL), so Faust's data dir stays out of the cwd.
        datadir=str(faust_dir / "{conf.id}"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # The embedded broker rebalances slowly with Kafka's long defaults; these are safe on Kafka too.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        stream_wait_empty=False,
        web_enabled=False,  # the HTTP API is suqiu api; N workers on one host must not fight over a port
        producer_acks=-1,
        Monitor=QuietMonitor,
    )
    rt = RuntimeService(runtime or Runtime(settings))
    app.add_dependency(rt)
    commands = app.topic(settings.commands_topic, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    outputs = {name: app.topic(name, key_serializer="raw", value_serializer="raw")
               for name in (settings.results_topic, settings.dlq_topic)}

    @app.agent(commands, name="command-intake")
    async def command_intake(stream: faust.StreamT[bytes]) -> None:
        await rt.ready.wait()
        r = rt.runtime
        handler = CommandIntake(settings, r.service, r.codec, r.pool, r.keys)
        async for event in stream.events():
            out = await handler.handle(event.key, event.value, _header_pairs(event.headers))
            # Wait for the broker's ack before the offset moves on: a result is never only in a buffer.
            await (await outputs[out.topic].send(key=out.key, value=out.value, headers=out.headers))

    @app.agent(events, name="read-models")
    async def read_models(stream: faust.StreamT[bytes]) -> None:
        await rt.ready.wait()
        r = rt.runtime
        projector = ProjectorProcesses(settings, r.policy, settings.projector_processes)

        async def project(batch: list[EventT[Any]]) -> None:
            for out in await projector.apply([_record(ev) for ev in batch], r.clock.now()):
                await (await outputs[out.topic].send(key=out.key, value=out.value, headers=out.headers))

        try:
            await projector.start(r.clock.now())
            await Batcher(stream, project, size=settings.projector_batch, within=0.05).run()
        finally:
            projector.close()

    if settings.jurisdiction_feeds:

        @app.agent(events, name="jurisdiction-feeds")
        async def jurisdiction_feeds(stream: faust.StreamT[bytes]) -> None:
            await rt.ready.wait()
            r = rt.runtime
            router = JurisdictionFeeds(settings, r.pool, r.codec, lambda: r.context.jurisdictions)
            # Its own producer, for whole batches per partition (streams.publishing): Faust's
            # sends each record alone, and a failed one does not stop those behind it.
            # Metadata at most 10 s old: a feed topic the relay created again (see OutboxRelay)
            # is seen with its new partitions soon, and a batch held on the old count goes.
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=2,
                                        max_batch_size=512 * 1024, metadata_max_age_ms=10_000)
            await producer.start()

            async def route(batch: list[EventT[Any]]) -> None:
                await publish_held(producer, await router.by_topic(
                    [(ev.key, ev.value, _header_pairs(ev.headers)) for ev in batch]), settings.partitions)

            try:
                await Batcher(stream, route, size=settings.projector_batch, within=0.05).run()
            finally:
                await producer.stop()

    if settings.federation:
        remote = {name: app.topic(name, key_serializer="raw", value_serializer="raw")
                  for name in (f"{prefix}appeals.commands.v1" for prefix in settings.federation.values())}

        @app.agent(events, name="federation")
        async def federation(stream: faust.StreamT[bytes]) -> None:
            await rt.ready.wait()
            bridge = FederationBridge(settings, rt.runtime.pool, rt.runtime.codec)

            async def bridge_batch(batch: list[EventT[Any]]) -> None:
                for ev in batch:
                    try:
                        decoded = rt.runtime.codec.decode_event(ev.value or b"")
                    except ValueError:
                        continue  # the read-models agent dead-letters it
                    out = await bridge.handle(decoded)
                    if out is not None:
                        await (await remote[out.topic].send(key=out.key, value=out.value, headers=out.headers))

            await Batcher(stream, bridge_batch, size=500, within=0.05).run()

    @app.task
    async def sla_timers() -> None:
        # A loop, not app.timer: a tick firing a burst of deadlines can outlast the interval,
        # and Faust then skips the next tick and warns that the two overlap.
        await rt.ready.wait()
        r = rt.runtime
        timers = SlaTimers(r.pool, r.service, r.clock, settings.system_id)
        while True:
            owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.events_topic}
            try:
                while await timers.fire_due(owned) >= timers.batch:
                    pass
                await timers.revise_provisional(r.policy)
            except Exception:
                # Every tick compares now with the stored deadlines, so the next one catches up.
                log.warning("sla timer tick failed", exc_info=True)
            await asyncio.sleep(settings.timer_interval)

    @app.task
    async def sla_policy() -> None:
        await rt.ready.wait()
        r = rt.runtime
        if r.policy_document is None:
            return  # a policy injected by a test or a benchmark: nothing to register
        try:
            await roll_out_policy(r.pool, r.service, r.policy, r.policy_document, r.clock, settings.system_id)
        except Exception:
            log.warning("sla policy roll-out failed; the next worker start retries it", exc_info=True)

    @app.task
    async def outbox_relay() -> None:
        await run_relay(settings)

    return app
