"""The Faust app factory: agents and services for one worker, nothing created at import."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import faust
import structlog
from mode import Service

from streams.intake import CommandIntake
from streams.relay import OutboxRelay
from suqiu.config import Settings
from suqiu.runtime import Runtime

log = structlog.get_logger(__name__)


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


def create_app(settings: Settings, runtime: Runtime | None = None, *, relay: bool = True) -> faust.App:
    """A Faust app for `settings`; pass a runtime to inject a clock or policy (tests)."""
    settings.require()
    app = faust.App(
        f"suqiu-{settings.topic_prefix}{settings.system_id}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # The embedded broker rebalances slowly with Kafka's long defaults; these are safe on Kafka too.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        stream_wait_empty=False,
        producer_acks=-1,
    )
    rt = RuntimeService(runtime or Runtime(settings))
    app.add_dependency(rt)
    commands = app.topic(settings.commands_topic, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")
    intake: list[CommandIntake] = []

    @app.agent(commands, name="command-intake")
    async def command_intake(stream: faust.StreamT[bytes]) -> None:
        await rt.ready.wait()
        handler = CommandIntake(settings, rt.runtime.service, rt.runtime.codec)
        intake.append(handler)
        async for event in stream.events():
            out = await handler.handle(event.key, event.value, list((event.headers or {}).items())
                                       if isinstance(event.headers, dict) else list(event.headers or []))
            fut = await app.topic(out.topic, key_serializer="raw", value_serializer="raw").send(
                key=out.key, value=out.value, headers=out.headers)
            await fut

    if relay:
        @app.task
        async def outbox_relay() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await OutboxRelay(settings).run()

    return app
