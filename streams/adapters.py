"""What a Faust worker needs around Suqiu's code: a quiet monitor, the runtime as a service,
and Faust's events as plain records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from faust.sensors import Monitor
from faust.types import TP, EventT, Message, StreamT
from mode import Service

from streams.projecting import Record
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
        self._stop_metrics: Callable[[], None] | None = None

    async def on_start(self) -> None:
        await self.runtime.open()
        port = self.runtime.settings.metrics_port
        if port is not None:
            self._stop_metrics = self.runtime.metrics.serve(port)
            log.info("metrics served", port=port)
        self.ready.set()

    async def on_stop(self) -> None:
        if self._stop_metrics is not None:
            self._stop_metrics()
        await self.runtime.close()


def header_pairs(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """Faust hands headers over as a mapping or as pairs, depending on the code path."""
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def record(ev: EventT[Any]) -> Record:
    m = ev.message
    return m.topic, m.partition, m.offset, ev.key, ev.value, header_pairs(ev.headers)
