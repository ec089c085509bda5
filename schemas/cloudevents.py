"""CloudEvents 1.0 attributes of every event record, in the Kafka protocol binding's binary mode.

The record's value stays the Avro single-object bytes (the hash chain is over them); the
attributes travel as `ce_`-prefixed headers, so a consumer with any CloudEvents SDK reads the
id, type, source, subject and time without decoding Avro. docs/events.md lists them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from suqiu.schemas.codec import HEADER, MAGIC

SPEC_VERSION = "1.0"
TYPE_PREFIX = "cn.suqiu."
CONTENT_TYPE = "avro/binary"
_WORDS = re.compile(r"[A-Z][a-z]*")


def ce_type(event_type: str) -> str:
    """`AppealDispatched` -> `cn.suqiu.appeal.dispatched.v1`: the event's words, lower case, dotted."""
    return TYPE_PREFIX + ".".join(w.lower() for w in _WORDS.findall(event_type)) + ".v1"


def ce_source(system_id: str, case_id: str) -> str:
    """The deployment that recorded the event, and the case: a URI reference unique per producer."""
    return f"/suqiu/{system_id}/cases/{case_id}"


def content_type(data: bytes) -> str:
    """avro/binary with the writer schema's CRC-64-AVRO fingerprint (GET /v1/schemas/{fingerprint})."""
    if len(data) >= HEADER and data[:2] == MAGIC:
        return f"{CONTENT_TYPE}; fingerprint={data[2:HEADER].hex()}"
    return CONTENT_TYPE


def headers(system_id: str, case_id: str, event_type: str, event_id: str, occurred_at: datetime,
            data: bytes) -> list[tuple[str, bytes]]:
    """The binary-mode headers of one stored event."""
    return _headers(system_id, case_id, ce_type(event_type), event_id, occurred_at, data)


def command_headers(system_id: str, case_id: str, command_type: str, command_id: str, at: datetime,
                    data: bytes) -> list[tuple[str, bytes]]:
    """The headers of a command one deployment sends another (federation): `case_id` is the
    sender's case it comes from, `at` the time of the event that caused it."""
    return _headers(system_id, case_id, f"{TYPE_PREFIX}command.{command_type}.v1", command_id, at, data)


def _headers(system_id: str, case_id: str, type_: str, id_: str, at: datetime, data: bytes) -> list[tuple[str, bytes]]:
    time = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return [("ce_specversion", SPEC_VERSION.encode()), ("ce_id", id_.encode()),
            ("ce_source", ce_source(system_id, case_id).encode()), ("ce_type", type_.encode()),
            ("ce_time", time.encode()), ("ce_subject", case_id.encode()), ("content-type", content_type(data).encode())]
