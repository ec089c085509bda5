"""Decode Suqiu events (Avro single-object encoding) with fastavro, schemas fetched by fingerprint.

The frame is C3 01, the 8-byte CRC-64-AVRO fingerprint of the writer schema, then the Avro
body. The writer schema is served at GET {api}/v1/schemas/{fingerprint-hex}; cache it, it
never changes for a fingerprint. Copy this file into your consumer.
"""

from __future__ import annotations

import io
import json
import urllib.request
from typing import Any

import fastavro

MAGIC = b"\xc3\x01"


class EventDecoder:
    def __init__(self, api_base: str) -> None:
        self.api_base = api_base.rstrip("/")
        self._schemas: dict[str, tuple[str, Any]] = {}

    def knows(self, value: bytes) -> bool:
        """Whether the writer schema of `value` is cached (False for what is not a Suqiu event)."""
        return value[2:10].hex() in self._schemas or len(value) < 10 or value[:2] != MAGIC

    def writer(self, fingerprint: str) -> tuple[str, Any]:
        if fingerprint not in self._schemas:
            with urllib.request.urlopen(f"{self.api_base}/v1/schemas/{fingerprint}", timeout=10) as resp:
                info = json.load(resp)
            self._schemas[fingerprint] = (info["name"], fastavro.parse_schema(info["schema"]))
        return self._schemas[fingerprint]

    def decode(self, value: bytes) -> tuple[str, dict[str, Any]]:
        """(event type, record); raises ValueError for what is not a Suqiu event."""
        if len(value) < 10 or value[:2] != MAGIC:
            raise ValueError("not Avro single-object encoding")
        name, schema = self.writer(value[2:10].hex())
        record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, None)
        return name.rsplit(".", 1)[-1], record
