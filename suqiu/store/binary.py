"""Values in the form PostgreSQL's binary COPY reads, for columns whose Python value is text.

Binary COPY carries no per-value type: the server reads each field with its column's own
receive function. A uuid column reads 16 bytes and a jsonb column a version byte (1) and the
JSON text, so such values travel as bytea (COPY_AS) once converted here. Binary COPY spares
PostgreSQL parsing text (a bytea in hex is twice its size) and psycopg formatting it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

COPY_AS = {"jsonb": "bytea", "uuid": "bytea", "int": "int4"}


def uuid_bytes(text: str) -> bytes:
    """A canonical UUID's 16 bytes (a quarter of the cost of uuid.UUID(text).bytes)."""
    raw = bytes.fromhex(text.replace("-", ""))
    if len(raw) != 16:
        raise ValueError(f"not a UUID: {text!r}")
    return raw


def jsonb_bytes(text: str) -> bytes:
    return b"\x01" + text.encode()


CONVERT: dict[str, Callable[[Any], bytes]] = {"jsonb": jsonb_bytes, "uuid": uuid_bytes}
