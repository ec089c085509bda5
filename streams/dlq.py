"""Dead letters: what could not be decoded goes to appeals.dlq.v1 untouched, reason in headers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from psycopg_pool import AsyncConnectionPool

log = structlog.get_logger(__name__)
Headers = list[tuple[str, bytes]]
# Well under the producer's max_request_size (1 MB): a larger dead letter is kept in PostgreSQL.
INLINE_MAX = 512 * 1024
SOURCE_TOPIC = "suqiu.dlq.source_topic"  # the header naming the topic a dead letter came from


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


def dead_letter(dlq_topic: str, source_topic: str, key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, bytes]], reason: str) -> Outgoing:
    log.warning("record dead-lettered", source_topic=source_topic, reason=reason, size=len(value or b""))
    extra = [("suqiu.dlq.reason", reason.encode()), (SOURCE_TOPIC, source_topic.encode())]
    return Outgoing(dlq_topic, key, value or b"", [*headers, *extra])


async def park(pool: AsyncConnectionPool[Any], letter: Outgoing) -> Outgoing:
    """`letter` itself if the broker takes it, else a pointer to the row that keeps it whole."""
    size = len(letter.value) + len(letter.key or b"") + sum(len(k) + len(v) for k, v in letter.headers)
    if size <= INLINE_MAX:
        return letter
    headers = {k: v.decode(errors="replace") for k, v in letter.headers}
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO dead_letters (source_topic, key, value, headers, reason) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING id", (headers.get(SOURCE_TOPIC, ""), letter.key, letter.value,
                             orjson.dumps(headers).decode(), headers.get("suqiu.dlq.reason", "")))
        row = await cur.fetchone()
    assert row is not None
    log.warning("dead letter kept in PostgreSQL", dead_letter_id=row[0], size=size)
    pointer = [(k, v) for k, v in letter.headers if k.startswith("suqiu.dlq.")]
    return Outgoing(letter.topic, (letter.key or b"")[:256] or None, b"",
                    [*pointer, ("suqiu.dlq.stored", f"dead_letters/{row[0]}".encode()),
                     ("suqiu.dlq.size", str(size).encode())])
