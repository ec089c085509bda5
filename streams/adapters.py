"""What a Faust worker needs around Suqiu's code: a quiet monitor, the runtime as a service,
and Faust's events as plain records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import structlog
from faust.sensors import Monitor
from faust.transport.consumer import Consumer
from faust.types import TP, ConsumerT, EventT, Message, StreamT
from mode import Service

from suqiu.service.runtime import Runtime
from suqiu.streams.projecting import Record

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


async def skip_ahead(consumer: ConsumerT, topic: str, batch: Sequence[Record], skip_to: Mapping[int, int]) -> int:
    """Seek past republished history the read models hold (suqiu.streams.catchup); how many records were skipped.

    Faust commits a partition only up to its first offset not acknowledged, and the records
    skipped are never delivered, so they go into Faust's own record of offsets it will not see
    (the gaps it keeps for compacted topics): once a record after them is acknowledged, the
    commits go on past them. Records of the gap already read before the seek are acknowledged
    too; marking the gap as acknowledged keeps them from counting twice, which would split
    Faust's run of consecutive offsets and hold its commits back.
    """
    faust_consumer = cast(Consumer, consumer)
    skipped = 0
    for partition, offset in skip_to.items():
        tp = TP(topic, partition)
        seen = max(r[2] for r in batch if r[1] == partition)
        await faust_consumer.seek(tp, offset)
        await faust_consumer._add_gap(tp, seen + 1, offset - 1)
        faust_consumer._acked_index[tp].update(range(seen + 1, offset))
        log.info("skipped republished history the read models hold", partition=partition,
                 from_offset=seen + 1, to_offset=offset)
        skipped += offset - seen - 1
    return skipped


def header_pairs(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """Faust hands headers over as a mapping or as pairs, depending on the code path."""
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def record(ev: EventT[Any]) -> Record:
    m = ev.message
    return m.topic, m.partition, m.offset, ev.key, ev.value, header_pairs(ev.headers)
