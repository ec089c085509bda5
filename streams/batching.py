"""Batches from a Faust stream, handled while the next batch is read, acknowledged only once handled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
from faust.types import EventT

Handler = Callable[[list[EventT[Any]]], Awaitable[None]]


class Batcher:
    """Groups a stream's events into batches of up to `size`, or what came within `within` seconds.

    Faust's `take_events` stops reading while a batch is handled and is slow per event;
    here the stream keeps being read while up to `depth` batches wait or are handled in order,
    and each event is acknowledged only after its batch's handler returned, so a crash
    redelivers rather than loses.
    """

    def __init__(self, stream: faust.StreamT[Any], handle: Handler, *, size: int, within: float,
                 depth: int = 2) -> None:
        # noack() is on Faust's Stream, not on the StreamT interface an agent is typed with.
        self.stream = cast(faust.Stream[Any], stream).noack()
        self.handle = handle
        self.size = size
        self.within = within
        self.queue: asyncio.Queue[list[EventT[Any]]] = asyncio.Queue(maxsize=max(depth - 1, 1))
        self.pending: list[EventT[Any]] = []
        self.busy = False

    async def run(self) -> None:
        """Read the stream until the agent stops; a handler's failure ends it with that error."""
        agent = asyncio.current_task()
        worker = asyncio.create_task(self._work(), name="batch-handler")
        flusher = asyncio.create_task(self._flush_idle(), name="batch-flusher")

        def stop_agent(task: asyncio.Task[None]) -> None:
            if agent is not None and not task.cancelled() and task.exception() is not None:
                agent.cancel()

        worker.add_done_callback(stop_agent)
        try:
            async for event in self.stream.events():
                self.pending.append(event)
                if len(self.pending) >= self.size:
                    batch, self.pending = self.pending, []
                    await self.queue.put(batch)
        except asyncio.CancelledError:
            if worker.done() and not worker.cancelled() and (error := worker.exception()) is not None:
                raise error from None
            raise
        finally:
            flusher.cancel()
            worker.cancel()
            await asyncio.gather(flusher, worker, return_exceptions=True)

    async def _flush_idle(self) -> None:
        while True:
            await asyncio.sleep(self.within)
            # Only for an idle handler: a busy one takes what is pending itself once it is done.
            if self.pending and self.queue.empty() and not self.busy:
                batch, self.pending = self.pending, []
                self.queue.put_nowait(batch)

    async def _work(self) -> None:
        while True:
            if self.queue.empty() and self.pending:
                # Done with nothing queued: what arrived meanwhile goes now, full or not. Flushing
                # on the timer instead cut a busy stream into uneven batches, some of a few hundred.
                batch, self.pending = self.pending, []
            else:
                batch = await self.queue.get()
            self.busy = True
            try:
                await self.handle(batch)
            finally:
                self.busy = False
            for event in batch:
                await self.stream.ack(event)
