"""Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body) for events and commands."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import typing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import fastavro
import orjson
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from suqiu.domain.commands import COMMAND_TYPES
from suqiu.domain.events import EVENT_TYPES, Event
from suqiu.domain.model import Actor, Role, field_names, record_fields
from suqiu.schemas.writer import EPOCH, event_writer

AVRO_DIR = Path(__file__).parent / "avro"
HISTORY_DIR = Path(__file__).parent / "history"
MAGIC = b"\xc3\x01"
HEADER = 10
HASH_SIZE = 32
GENESIS = bytes(HASH_SIZE)


class DecodeError(ValueError):
    """Bytes that are not a message we can read; the reason goes to the dead-letter headers."""


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """One schema as served at /v1/schemas: full name, kind, release, fingerprint and JSON."""

    name: str
    kind: str
    version: str
    fingerprint: str
    schema: dict[str, Any]
    parsed: Any = dataclasses.field(repr=False, compare=False)
    # Decoding asks fastavro for union branch names only where a union has several named types:
    # the names cost about a third of a decode.
    named_unions: bool = dataclasses.field(default=False, repr=False, compare=False)
    # The same schema without logical types: events decode through it (see Codec.decode_event).
    bare: Any = dataclasses.field(default=None, repr=False, compare=False)
    # Top-level fields holding timestamp-millis (alone or in a nullable union).
    instants: tuple[str, ...] = dataclasses.field(default=(), repr=False, compare=False)

    @property
    def header(self) -> bytes:
        return MAGIC + bytes.fromhex(self.fingerprint)


def _camel(type_name: str) -> str:
    return "".join(p.capitalize() for p in type_name.split("_"))


_ROLES = {r.value: r for r in Role}
_BRANCH_TO_TYPE = {f"suqiu.commands.{_camel(t)}": t for t in COMMAND_TYPES}


def load_schema_set(root: Path, version: str) -> list[SchemaInfo]:
    """Every top-level schema under `root`, with the shared envelope inlined."""
    envelope = json.loads((root / "events" / "Envelope.avsc").read_text("utf-8"))
    out: list[SchemaInfo] = []
    for path in sorted((root / "events").glob("*.avsc")):
        if path.stem == "Envelope":
            continue
        raw = json.loads(path.read_text("utf-8"))
        raw["fields"] = [
            {**f, "type": envelope} if f["type"] == "suqiu.events.Envelope" else f for f in raw["fields"]
        ]
        out.append(_info(raw, "event", version))
    for path in sorted((root / "commands").glob("*.avsc")):
        out.append(_info(json.loads(path.read_text("utf-8")), "command", version))
    return out


def _info(raw: dict[str, Any], kind: str, version: str) -> SchemaInfo:
    fp = fingerprint(to_parsing_canonical_form(parse_schema(raw, _write_hint=False)), "CRC-64-AVRO")
    # The hinted form is what fastavro recognises as already parsed; without the hint it re-parses per call.
    bare: Any = None
    instants: tuple[str, ...] = ()
    if kind == "event":
        bare, instants = parse_schema(_without_logical_types(raw)), _instant_fields(raw)
    return SchemaInfo(f"{raw['namespace']}.{raw['name']}", kind, version, fp, raw, parse_schema(raw),
                      _has_named_union(raw), bare, instants)


# Where events may hold logical types: decode_event converts exactly these, and a schema that
# puts one anywhere else is refused when the codec loads, not returned as a raw long.
_ENVELOPE_LOGICAL = {"event_id": "uuid", "occurred_at": "timestamp-millis", "recorded_at": "timestamp-millis"}
_MILLIS = "timestamp-millis"


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(v) for v in schema]
    return schema


def _logical(schema: Any) -> str | None:
    return schema.get("logicalType") if isinstance(schema, dict) else None


def _instant_fields(event_schema: dict[str, Any]) -> tuple[str, ...]:
    instants = []
    for f in event_schema["fields"]:
        t = f["type"]
        if f["name"] == "envelope":
            found = {g["name"]: _logical(g["type"]) for g in t["fields"] if _has_logical(g["type"])}
            if found != _ENVELOPE_LOGICAL:
                raise ValueError(f"{event_schema['name']}: envelope logical types {found}, the codec converts "
                                 f"exactly {_ENVELOPE_LOGICAL}")
        elif _logical(t) == _MILLIS or (isinstance(t, list) and len(t) == 2 and "null" in t
                                        and any(_logical(b) == _MILLIS for b in t)):
            instants.append(f["name"])
        elif _has_logical(t):
            raise ValueError(f"{event_schema['name']}.{f['name']}: a logical type the event codec does not convert")
    return tuple(instants)


def _has_logical(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "logicalType" in schema or any(_has_logical(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_logical(v) for v in schema)
    return False


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _has_named_union(schema: Any) -> bool:
    if isinstance(schema, list):
        named = [b for b in schema if (b.get("type") if isinstance(b, dict) else b) not in _PRIMITIVES]
        return len(named) > 1 or any(_has_named_union(b) for b in schema)
    if isinstance(schema, dict):
        parts = [f["type"] for f in schema.get("fields", [])] + [schema[k] for k in ("items", "values") if k in schema]
        return any(_has_named_union(p) for p in parts)
    return False


class Codec:
    """Encodes and decodes every message type; reads any released schema version."""

    def __init__(self) -> None:
        current = load_schema_set(AVRO_DIR, "current")
        self.current: dict[str, SchemaInfo] = {s.name: s for s in current}
        self.by_fingerprint: dict[str, SchemaInfo] = {s.fingerprint: s for s in current}
        for release in sorted(p for p in HISTORY_DIR.glob("v*") if p.is_dir()):
            for s in load_schema_set(release, release.name):
                self.by_fingerprint.setdefault(s.fingerprint, s)
        self._actors: dict[tuple[str, str, str | None, str | None], Actor] = {}
        # For decoding, per event schema name: the payload class, its fields, which of them are
        # instants, and which hold a nested record (as (field, class)): the rest come as Avro gives them.
        self._payloads = {f"suqiu.events.{n}": (c, field_names(c), self.current[f"suqiu.events.{n}"].instants,
                                                _records_in(c)) for n, c in EVENT_TYPES.items()}
        self._writers = {n: (self.current[f"suqiu.events.{n}"].header,
                             event_writer(self.current[f"suqiu.events.{n}"].schema)) for n in EVENT_TYPES}

    # -- events ---------------------------------------------------------------------------

    def encode_event(self, event: Event, prev_hash: bytes) -> tuple[bytes, bytes]:
        """The framed bytes of `event` chained to `prev_hash`, and its hash."""
        header, write = self._writers[event.event_type]
        unhashed = write(event)
        digest = chain_hash(prev_hash, unhashed)
        return header + unhashed + digest, digest

    def decode_event(self, data: bytes) -> Event:
        # Read without logical types and convert the few instants here: fastavro's own
        # conversions (a UUID object for event_id, timedelta arithmetic per instant) were
        # nearly half of a decode (see BENCHMARKS.md).
        info, record = self._read(data, "event", bare=True)
        try:
            return self._event(info.name, record)
        except (OverflowError, ValueError) as exc:  # an instant out of range, a role we do not know
            raise DecodeError(f"undecodable {info.name} body: {exc}") from exc

    def _event(self, name: str, record: dict[str, Any]) -> Event:
        cls, fields, instants, records = self._payloads[name]
        env = record["envelope"]
        for f in instants:
            if record[f] is not None:
                record[f] = EPOCH + timedelta(milliseconds=record[f])
        for f, kind, many in records:
            if many:
                record[f] = [kind(**r) for r in record[f]]
            elif record[f] is not None:
                record[f] = kind(**record[f])
        a = env["actor"]
        who = (a["system"], a["role"], a["department"], a["person"])
        actor = self._actors.get(who)
        if actor is None:
            # Few actors act on many events: one Actor each (bounded, as actors are names from input).
            if len(self._actors) >= 4096:
                self._actors.clear()
            actor = self._actors[who] = Actor(who[0], _ROLES.get(who[1]) or Role(who[1]), who[2], who[3])
        return Event(
            env["event_id"], env["case_id"], env["seq"], EPOCH + timedelta(milliseconds=env["occurred_at"]),
            EPOCH + timedelta(milliseconds=env["recorded_at"]), actor, env["command_id"], env["correlation_id"],
            env["causation_id"], cls(*[record[f] for f in fields]), env["schema_version"],
        )

    def decode_event_record(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """The event's record name and its fields as Avro gives them (for JSON views)."""
        info, record = self._read(data, "event")
        return info.name.rsplit(".", 1)[1], record

    # -- commands and results -------------------------------------------------------------

    def encode_command(
        self, type_name: str, body: dict[str, Any], *, command_id: str, actor: Actor,
        case_id: str | None = None, expected_seq: int | None = None, correlation_id: str | None = None,
    ) -> bytes:
        info = self.current["suqiu.commands.Command"]
        record = {
            "command_id": command_id, "case_id": case_id, "expected_seq": expected_seq,
            "actor": {"system": actor.system, "role": actor.role.value, "department": actor.department,
                      "person": actor.person},
            "correlation_id": correlation_id,
            "body": (f"suqiu.commands.{_camel(type_name)}", body),
        }
        return self._write(info, record)

    def decode_command(self, data: bytes) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(command type, the command's envelope fields, the body fields)."""
        _, record = self._read(data, "command", name="suqiu.commands.Command")
        branch, body = record.pop("body")
        return _BRANCH_TO_TYPE[branch], record, {k: v for k, v in body.items() if v is not None}

    def encode_result(self, result: dict[str, Any]) -> bytes:
        error = result.get("error")
        record = {
            "command_id": result["command_id"], "case_id": result.get("case_id"), "status": result["status"],
            "seq": result.get("seq"), "event_ids": list(result.get("event_ids", [])),
            "error": None if error is None else {
                "code": error["code"], "message": error["message"],
                "details_json": json.dumps(error.get("details", {}), ensure_ascii=False, default=str),
            },
        }
        return self._write(self.current["suqiu.commands.CommandResult"], record)

    def decode_result(self, data: bytes) -> dict[str, Any]:
        _, record = self._read(data, "command", name="suqiu.commands.CommandResult")
        if record["error"] is not None:
            record["error"]["details"] = json.loads(record["error"].pop("details_json"))
        return record

    # -- framing --------------------------------------------------------------------------

    def _write(self, info: SchemaInfo, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(info.header)
        fastavro.schemaless_writer(buf, info.parsed, record)
        return buf.getvalue()

    def _read(self, data: bytes, kind: str, name: str | None = None, *, bare: bool = False,
              ) -> tuple[SchemaInfo, dict[str, Any]]:
        if len(data) < HEADER or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (no C3 01 marker)")
        fp = data[2:HEADER].hex()
        writer = self.by_fingerprint.get(fp)
        if writer is None:
            raise DecodeError(f"unknown schema fingerprint {fp}")
        if writer.kind != kind or (name is not None and writer.name != name):
            raise DecodeError(f"schema {writer.name} is not a {name or kind}")
        reader = self.current.get(writer.name, writer)
        names = writer.named_unions or reader.named_unions
        try:
            writer_schema, reader_schema = (writer.bare, reader.bare) if bare else (writer.parsed, reader.parsed)
            record = fastavro.schemaless_reader(
                io.BytesIO(data[HEADER:]), writer_schema,
                None if reader is writer else reader_schema, return_record_name=names,
                return_record_name_override=names,
            )
        except Exception as exc:  # fastavro raises many types for truncated or bad bodies
            raise DecodeError(f"undecodable {writer.name} body: {exc}") from exc
        if not isinstance(record, dict):
            raise DecodeError(f"{writer.name} body is not a record")
        return writer, record


def _records_in(payload: type[Any]) -> tuple[tuple[str, type[Any], bool], ...]:
    """The payload's fields whose type is a record (a dataclass), optional or not, or a list of
    records: (field, record class, whether a list)."""
    found: list[tuple[str, type[Any], bool]] = []
    for name, hint in typing.get_type_hints(payload).items():
        many = typing.get_origin(hint) is list
        kinds = [k for k in (hint, *typing.get_args(hint)) if isinstance(k, type) and dataclasses.is_dataclass(k)]
        if kinds:
            found.append((name, kinds[0], many))
    return tuple(found)


def chain_hash(prev_hash: bytes, unhashed: bytes) -> bytes:
    """hash = SHA-256(prev_hash || Avro body of the event without its hash field)."""
    return hashlib.sha256(prev_hash + unhashed).digest()


def unhashed_body(framed: bytes) -> bytes:
    return framed[HEADER:-HASH_SIZE]


def stored_hash(framed: bytes) -> bytes:
    return framed[-HASH_SIZE:]


def to_json_value(value: Any) -> Any:
    """Avro-decoded values as JSON: instants in ISO 8601 UTC, bytes in hex."""
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [to_json_value(v) for v in value]
    if isinstance(value, date | bytes | UUID):
        return _json_scalar(value)
    return value


def to_json_text(value: Any) -> str:
    """JSON text of what to_json_value gives (records as objects), in one pass of orjson.

    Instants and records go through _json_scalar (orjson's own forms differ: no milliseconds
    pinned, no Z); half the cost of the stdlib encoder for a timeline row.
    """
    return orjson.dumps(value, default=_json_scalar, option=_JSON_OPTIONS).decode()


def _json_scalar(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, frozenset | set):
        return list(value)
    names = record_fields(type(value))
    if names is not None:
        # One level at a time: the encoder comes back here for nested records.
        return {n: getattr(value, n) for n in names}
    raise TypeError(f"{type(value).__name__} is not JSON")


# Instants and records are ours to write (see to_json_text); keys that are not strings become
# strings, as the stdlib encoder made them.
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
