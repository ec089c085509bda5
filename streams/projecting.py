"""The events-topic side of the projector: decode each record once, dead-letter what cannot be."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from projections.projector import Incoming, Projector
from schemas.codec import Codec, DecodeError
from streams.dlq import Outgoing, dead_letter
from suqiu.config import Settings

log = structlog.get_logger(__name__)


class EventsConsumer:
    """Feeds batches from appeals.events.v1 to the projector; never gives a batch up."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool[Any], codec: Codec, projector: Projector) -> None:
        self.settings = settings
        self.pool = pool
        self.codec = codec
        self.projector = projector

    def decode(self, records: Sequence[tuple[str, int, int, bytes | None, bytes | None, list[tuple[str, bytes]]]]
               ) -> tuple[list[Incoming], list[Outgoing]]:
        """(topic, partition, offset, key, value, headers) -> decoded events, dead letters."""
        good: list[Incoming] = []
        bad: list[Outgoing] = []
        for topic, partition, offset, key, value, headers in records:
            try:
                good.append(Incoming(topic, partition, offset, self.codec.decode_event(value or b"")))
            except (DecodeError, ValueError, KeyError) as exc:
                bad.append(dead_letter(self.settings.dlq_topic, topic, key, value, headers,
                                       f"undecodable event at {topic}[{partition}]@{offset}: {exc}"))
        return good, bad

    async def project(self, batch: Sequence[Incoming]) -> int:
        """Apply the batch, waiting out database outages: its offsets move only after the commit."""
        delay = 0.2
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await self.projector.apply(conn, batch)
            except psycopg.OperationalError as exc:
                log.warning("database unavailable, holding the batch", error=str(exc), size=len(batch))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
