"""The Faust app factory: wires one worker's agents and tasks, nothing created at import.

Each agent only moves records between Faust and the module that does its work: the command
intake, the projector, the jurisdiction feeds, the federation bridge, the SLA timers, the policy
roll-out and the outbox relay.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaProducer
from faust.types import EventT

from suqiu.base.config import Settings
from suqiu.service.runtime import Runtime
from suqiu.streams.adapters import QuietMonitor, RuntimeService, header_pairs, record, skip_ahead
from suqiu.streams.batching import Batcher
from suqiu.streams.dlq import SOURCE_TOPIC, Outgoing
from suqiu.streams.federation import FederationBridge
from suqiu.streams.feeds import JurisdictionFeeds
from suqiu.streams.intake import CommandIntake
from suqiu.streams.projecting import ProjectorProcesses
from suqiu.streams.publishing import publish_held
from suqiu.streams.relay import run_relay
from suqiu.streams.retention import run_retention
from suqiu.streams.retraining import run_retraining
from suqiu.streams.sla import SlaTimers, roll_out_policy

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Worker:
    """What every agent of one worker shares."""

    app: faust.App
    settings: Settings
    rt: RuntimeService
    events: faust.TopicT
    outputs: dict[str, faust.TopicT]

    async def send(self, out: Outgoing) -> None:
        """Send and wait for the broker's ack before the offset moves on: a result is never only in a buffer."""
        await (await self.outputs[out.topic].send(key=out.key, value=out.value, headers=out.headers))
        if out.topic == self.settings.dlq_topic:
            self.rt.runtime.metrics.dead_lettered(dict(out.headers).get(SOURCE_TOPIC, b"").decode("utf-8", "replace"))


def create_app(settings: Settings, runtime: Runtime | None = None) -> faust.App:
    """A Faust app for `settings`; pass a runtime to inject a clock or policy (tests)."""
    settings.require()
    app = _faust_app(settings)
    rt = RuntimeService(runtime or Runtime(settings))
    app.add_dependency(rt)
    w = Worker(app, settings, rt, _raw_topic(app, settings.events_topic),
               {name: _raw_topic(app, name) for name in (settings.results_topic, settings.dlq_topic)})
    _command_intake(w, _raw_topic(app, settings.commands_topic))
    _read_models(w)
    if settings.jurisdiction_feeds:
        _jurisdiction_feeds(w)
    if settings.federation:
        _federation(w)
    _routing(w)
    _retraining(w)
    _sla_timers(w)
    _sla_policy(w)
    _retention(w)

    @app.task
    async def outbox_relay() -> None:
        await run_relay(settings)

    return app


def _faust_app(settings: Settings) -> faust.App:
    faust_dir = Path(tempfile.gettempdir()) / "suqiu-faust"
    faust_dir.mkdir(exist_ok=True)
    return faust.App(
        f"suqiu-{settings.topic_prefix}{settings.system_id}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=_credentials(settings),
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


def _credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Faust's spelling of SUQIU_KAFKA_* (suqiu.base.kafka_security)."""
    security = settings.kafka_security
    if security.sasl:
        return faust.SASLCredentials(username=security.username, password=security.password,
                                     ssl_context=security.ssl_context(), mechanism=security.mechanism)
    context = security.ssl_context()
    return None if context is None else faust.SSLCredentials(context)


def _raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """Records stay bytes: Suqiu's codec, not Faust's serializers, reads and writes them."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def _command_intake(w: Worker, commands: faust.TopicT) -> None:
    @w.app.agent(commands, name="command-intake")
    async def command_intake(stream: faust.StreamT[bytes]) -> None:
        await w.rt.ready.wait()
        r = w.rt.runtime
        handler = CommandIntake(w.settings, r.service, r.codec, r.pool, r.keys)
        async for event in stream.events():
            await w.send(await handler.handle(event.key, event.value, header_pairs(event.headers)))


def _read_models(w: Worker) -> None:
    @w.app.agent(w.events, name="read-models")
    async def read_models(stream: faust.StreamT[bytes]) -> None:
        await w.rt.ready.wait()
        r = w.rt.runtime
        projector = ProjectorProcesses(w.settings, r.policy, w.settings.projector_processes)

        async def project(batch: list[EventT[Any]]) -> None:
            records = [record(ev) for ev in batch]
            done = await projector.apply(records, r.clock.now())
            for out in done.dead_letters:
                await w.send(out)
            r.metrics.skipped.inc(await skip_ahead(w.app.consumer, w.settings.events_topic, records, done.skip_to))

        try:
            await projector.start(r.clock.now())
            await Batcher(stream, project, size=w.settings.projector_batch, within=0.05).run()
        finally:
            projector.close()


def _jurisdiction_feeds(w: Worker) -> None:
    @w.app.agent(w.events, name="jurisdiction-feeds")
    async def jurisdiction_feeds(stream: faust.StreamT[bytes]) -> None:
        await w.rt.ready.wait()
        r = w.rt.runtime
        router = JurisdictionFeeds(w.settings, r.pool, r.codec, lambda: r.context.jurisdictions)
        # Its own producer, for whole batches per partition (suqiu.streams.publishing): Faust's
        # sends each record alone, and a failed one does not stop those behind it.
        # Metadata at most 10 s old: a feed topic the relay created again (see OutboxRelay)
        # is seen with its new partitions soon, and a batch held on the old count goes.
        producer = AIOKafkaProducer(bootstrap_servers=w.settings.kafka_bootstrap, acks="all", linger_ms=2,
                                    max_batch_size=512 * 1024, metadata_max_age_ms=10_000,
                                    **w.settings.kafka_security.client_kwargs())
        await producer.start()

        async def route(batch: list[EventT[Any]]) -> None:
            await publish_held(producer, await router.by_topic(
                [(ev.key, ev.value, header_pairs(ev.headers)) for ev in batch]), w.settings.partitions)

        try:
            await Batcher(stream, route, size=w.settings.projector_batch, within=0.05).run()
        finally:
            await producer.stop()


def _federation(w: Worker) -> None:
    for prefix in w.settings.federation.values():
        name = f"{prefix}appeals.commands.v1"
        w.outputs[name] = _raw_topic(w.app, name)

    @w.app.agent(w.events, name="federation")
    async def federation(stream: faust.StreamT[bytes]) -> None:
        await w.rt.ready.wait()
        r = w.rt.runtime
        bridge = FederationBridge(w.settings, r.pool, r.codec, r.personal)

        async def forward(batch: list[EventT[Any]]) -> None:
            for out in await bridge.forward(ev.value for ev in batch):
                await w.send(out)

        await Batcher(stream, forward, size=500, within=0.05).run()


def _routing(w: Worker) -> None:
    @w.app.agent(w.events, name="routing")
    async def routing(stream: faust.StreamT[bytes]) -> None:
        await w.rt.ready.wait()
        router = w.rt.runtime.router

        async def suggest(batch: list[EventT[Any]]) -> None:
            await router.handle(ev.value for ev in batch)

        await Batcher(stream, suggest, size=200, within=0.05).run()


def _retraining(w: Worker) -> None:
    @w.app.task
    async def routing_retraining() -> None:
        await w.rt.ready.wait()
        await run_retraining(w.rt.runtime, w.settings.routing_retrain_days)


def _sla_timers(w: Worker) -> None:
    @w.app.task
    async def sla_timers() -> None:
        await w.rt.ready.wait()
        r = w.rt.runtime

        def owned() -> set[int]:
            return {tp.partition for tp in w.app.assignor.assigned_actives() if tp.topic == w.settings.events_topic}

        await SlaTimers(r.pool, r.service, r.clock, w.settings.system_id).run(owned, r.policy,
                                                                              w.settings.timer_interval)


def _sla_policy(w: Worker) -> None:
    @w.app.task
    async def sla_policy() -> None:
        await w.rt.ready.wait()
        r = w.rt.runtime
        if r.policy_document is None:
            return  # a policy injected by a test or a benchmark: nothing to register
        try:
            await roll_out_policy(r.pool, r.service, r.policy, r.policy_document, r.clock, w.settings.system_id)
        except Exception:
            log.warning("sla policy roll-out failed; the next worker start retries it", exc_info=True)


def _retention(w: Worker) -> None:
    @w.app.task
    async def personal_data_retention() -> None:
        await w.rt.ready.wait()
        # Every worker sweeps: an erasure is idempotent, and the first to delete a key wins.
        await run_retention(w.rt.runtime.erasure, w.settings.personal_data_days, w.settings.retention_interval)
