"""Dead letters: what could not be decoded goes to appeals.dlq.v1 untouched, reason in headers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


def dead_letter(dlq_topic: str, source_topic: str, key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, bytes]], reason: str) -> Outgoing:
    log.warning("record dead-lettered", source_topic=source_topic, reason=reason, size=len(value or b""))
    extra = [("suqiu.dlq.reason", reason.encode()), ("suqiu.dlq.source_topic", source_topic.encode())]
    return Outgoing(dlq_topic, key, value or b"", [*headers, *extra])
