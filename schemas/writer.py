"""Event bodies in Avro binary, written by a function compiled from each event schema.

fastavro walks the schema for every record it writes, and an import writes five events per
row: that walk was the largest single cost of an import (BENCHMARKS.md, measurements behind the
code). The compiled writer reads the Event's attributes in schema order and writes the same
bytes, without the trailing hash (the hash is over these bytes). It covers the types the event
schemas use; a schema using another fails when the codec loads. Everything else, reading
included, stays with fastavro, and tests/test_schemas.py holds the two writers byte-equal.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from suqiu.domain.events import Event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)

EventWriter = Callable[[Event], bytes]


class _Source:
    """Python source for one writer: statements, and fresh local names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._names = 0

    def name(self) -> str:
        self._names += 1
        return f"v{self._names}"

    def add(self, indent: str, *statements: str) -> None:
        self.lines.extend(indent + s for s in statements)

    def long(self, indent: str, expr: str) -> None:
        """A zig-zag varint, as Avro writes int and long."""
        z = self.name()
        self.add(indent, f"{z} = {expr}", f"{z} = ({z} << 1) ^ ({z} >> 63)", f"while {z} > 127:",
                 f"    a(({z} & 127) | 128)", f"    {z} >>= 7", f"a({z})")

    def length(self, indent: str, expr: str) -> None:
        """A length (never negative): one byte below 64, as zig-zag maps n to 2n."""
        n = self.name()
        self.add(indent, f"{n} = len({expr})", f"if {n} < 64:", f"    a({n} << 1)", "else:")
        self.long(indent + "    ", n)


def event_writer(schema: dict[str, Any]) -> EventWriter:
    """The writer of one event schema (envelope inlined), its hash field left out."""
    fields = schema["fields"]
    if [f["name"] for f in fields[:1] + fields[-1:]] != ["envelope", "hash"]:
        raise ValueError(f"{schema['name']}: an event schema starts with envelope and ends with hash")
    src = _Source()
    src.add("    ", "o = bytearray()", "a = o.append")
    named: dict[str, Any] = {}
    _record(src, "    ", fields[0]["type"], "ev", named, f"{schema['name']}.envelope")
    src.add("    ", "p = ev.payload")
    for f in fields[1:-1]:
        _value(src, "    ", f["type"], f"p.{f['name']}", named, f"{schema['name']}.{f['name']}")
    src.add("    ", "return bytes(o)")
    code = "def write(ev):\n" + "\n".join(src.lines) + "\n"
    scope: dict[str, Any] = {"EPOCH": EPOCH, "MS": MILLISECOND, "DOUBLE": struct.Struct("<d").pack}
    exec(compile(code, f"<avro writer {schema['name']}>", "exec"), scope)
    writer: EventWriter = scope["write"]
    return writer


def _record(src: _Source, indent: str, schema: dict[str, Any], expr: str, named: dict[str, Any], where: str) -> None:
    named[schema["name"]] = named[_full_name(schema)] = schema
    obj = src.name()
    src.add(indent, f"{obj} = {expr}")
    for f in schema["fields"]:
        _value(src, indent, f["type"], f"{obj}.{f['name']}", named, f"{where}.{f['name']}")


def _value(src: _Source, indent: str, schema: Any, expr: str, named: dict[str, Any], where: str) -> None:
    if isinstance(schema, list):
        _union(src, indent, schema, expr, named, where)
        return
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if isinstance(kind, (dict, list)):
        _value(src, indent, kind, expr, named, where)
    elif kind == "record":
        _record(src, indent, schema, expr, named, where)
    elif kind == "string":
        b = src.name()
        src.add(indent, f"{b} = ({expr}).encode()")
        src.length(indent, b)
        src.add(indent, f"o += {b}")
    elif kind == "bytes":
        b = src.name()
        src.add(indent, f"{b} = {expr}")
        src.length(indent, b)
        src.add(indent, f"o += {b}")
    elif kind in ("int", "long") and logical == "timestamp-millis":
        src.long(indent, f"(({expr}) - EPOCH) // MS")
    elif kind in ("int", "long") and logical is None:
        src.long(indent, expr)
    elif kind == "double":
        src.add(indent, f"o += DOUBLE({expr})")
    elif kind == "boolean":
        src.add(indent, f"a(1 if {expr} else 0)")
    elif kind == "array":
        items, x = src.name(), src.name()
        src.add(indent, f"{items} = {expr}", f"if {items}:")
        src.length(indent + "    ", items)
        src.add(indent + "    ", f"for {x} in {items}:")
        _value(src, indent + "        ", schema["items"], x, named, f"{where}[]")
        src.add(indent, "a(0)")
    else:
        raise ValueError(f"{where}: the compiled event writer has no {kind!r}"
                         f"{f' ({logical})' if logical else ''}; add it to schemas/writer.py")


def _union(src: _Source, indent: str, schema: list[Any], expr: str, named: dict[str, Any], where: str) -> None:
    if len(schema) != 2 or "null" not in schema:
        raise ValueError(f"{where}: the compiled event writer takes only a nullable union, not {schema}")
    null = schema.index("null")
    v = src.name()
    src.add(indent, f"{v} = {expr}", f"if {v} is None:", f"    a({null << 1})", "else:", f"    a({(1 - null) << 1})")
    _value(src, indent + "    ", schema[1 - null], v, named, where)


def _full_name(schema: dict[str, Any]) -> str:
    name: str = schema["name"]
    return name if "." in name or "namespace" not in schema else f"{schema['namespace']}.{name}"
