"""The Avro contract: standard bytes, release compatibility, .avsc files agreeing with the code."""

from __future__ import annotations

import dataclasses
import io
import json
import typing
from datetime import UTC, datetime

import avro.io
import avro.schema
import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from suqiu.domain.events import EVENT_TYPES
from suqiu.domain.model import Actor, Role
from suqiu.schemas.codec import AVRO_DIR, GENESIS, HISTORY_DIR, Codec, DecodeError, _info, load_schema_set
from suqiu.schemas.writer import event_writer
from tests.support.events import NOW, avro_record, event


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_event_round_trips_and_apache_avro_reads_our_bytes(name: str) -> None:
    codec = Codec()
    ev = event(EVENT_TYPES[name])
    data, digest = codec.encode_event(ev, GENESIS)
    assert data[:2] == b"\xc3\x01" and data[-32:] == digest
    assert codec.decode_event(data) == ev
    sparse = event(EVENT_TYPES[name], nones=True)
    assert codec.decode_event(codec.encode_event(sparse, GENESIS)[0]) == sparse
    # decode_event converts instants itself; the view path leaves them to fastavro: both agree.
    _, record = codec.decode_event_record(data)
    assert record["envelope"]["occurred_at"] == ev.occurred_at and str(record["envelope"]["event_id"]) == ev.event_id
    assert all(record[f] == getattr(ev.payload, f) for f in info_instants(codec, name))
    info = codec.current[f"suqiu.events.{name}"]
    # encode_event converts instants itself; fastavro's own conversion gives the same bytes.
    for instant in (NOW, NOW.replace(microsecond=999_999), datetime(1969, 12, 31, 23, 59, 59, 500, tzinfo=UTC)):
        timed = dataclasses.replace(ev, occurred_at=instant, payload=dataclasses.replace(
            ev.payload, **{f: instant for f in info_instants(codec, name)}))
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, info.parsed, avro_record(timed))
        assert codec.encode_event(timed, GENESIS)[0][10:-32] == buf.getvalue()[:-32]
    assert data[2:10] == bytes.fromhex(info.fingerprint)
    reader = avro.io.DatumReader(avro.schema.parse(json.dumps(info.schema)))
    record = reader.read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert record["envelope"]["event_type"] == name and record["hash"] == digest
    # Our fingerprint is the spec's Rabin CRC-64 of the spec's canonical form. Apache's Python
    # package keeps {"type":"long"} for logical types where the spec ([STRIP], [PRIMITIVES]) and
    # Java give "long" (cf. AVRO-4004); apart from that its canonical form is ours.
    ours = to_parsing_canonical_form(info.parsed)
    assert rabin_crc64(ours) == info.fingerprint
    theirs = avro.schema.parse(json.dumps(info.schema)).canonical_form
    assert theirs.replace('{"type":"long"}', '"long"').replace('{"type":"string"}', '"string"') == ours


_CODEC = Codec()  # built once: the property test below runs 1,320 examples
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
# Whole milliseconds, as events hold them (the test above floors the rest the same way fastavro does).
_INSTANT = st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))


def _payloads(cls: type[typing.Any]) -> st.SearchStrategy[typing.Any]:
    """Any value of each field's type, optional ones None or not."""
    def of(hint: typing.Any) -> st.SearchStrategy[typing.Any]:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)):
            return st.none() | of(args[0])
        if dataclasses.is_dataclass(hint):
            return _payloads(typing.cast(type[typing.Any], hint))
        if typing.get_origin(hint) in (list, tuple):
            # Past 63 items the block count takes two bytes.
            return st.lists(of(typing.get_args(hint)[0]), max_size=70)
        return {str: _TEXT, int: st.integers(-2**31, 2**31 - 1), datetime: _INSTANT,
                bytes: st.binary(max_size=200), float: st.floats(allow_nan=False)}[hint]
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: of(hints[f.name]) for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_compiled_writer_writes_fastavros_bytes_for_any_event(name: str, data: st.DataObject) -> None:
    """encode_event's own writer against fastavro's, with logical types, on any values."""
    ev = dataclasses.replace(
        event(EVENT_TYPES[name]), event_id=data.draw(_TEXT), case_id=data.draw(_TEXT),
        seq=data.draw(st.integers(0, 2**63 - 1)), occurred_at=data.draw(_INSTANT), recorded_at=data.draw(_INSTANT),
        actor=data.draw(st.builds(Actor, _TEXT, st.sampled_from(Role), st.none() | _TEXT, st.none() | _TEXT)),
        payload=data.draw(_payloads(EVENT_TYPES[name])))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _CODEC.current[f"suqiu.events.{name}"].parsed, avro_record(ev))
    data = _CODEC.encode_event(ev, GENESIS)[0]
    assert data[10:-32] == buf.getvalue()[:-32]
    assert _CODEC.decode_event(data) == ev


def info_instants(codec: Codec, name: str) -> tuple[str, ...]:
    return codec.current[f"suqiu.events.{name}"].instants


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("occurred_at", 2**62, "out of range|too large|overflow"),
    ("role", "janitor", "not a valid Role"),
])
def test_a_well_framed_event_with_impossible_values_is_a_decode_error(field: str, value: typing.Any,
                                                                       reason: str) -> None:
    """Decoding converts instants and roles after fastavro: what it refuses must still be a DecodeError."""
    codec = Codec()
    record = avro_record(event(EVENT_TYPES["Urged"]))
    envelope = record["envelope"]
    (envelope["actor"] if field == "role" else envelope)[field] = value
    info = codec.current["suqiu.events.Urged"]
    buf = io.BytesIO()
    buf.write(info.header)
    fastavro.schemaless_writer(buf, info.parsed, record)
    with pytest.raises(DecodeError, match=reason):
        codec.decode_event(buf.getvalue())


def test_the_codec_refuses_a_logical_type_it_would_not_convert() -> None:
    schema = json.loads((AVRO_DIR / "events" / "Urged.avsc").read_text("utf-8"))
    schema["fields"].insert(1, {"name": "seen", "type": {"type": "array", "items": {
        "type": "long", "logicalType": "timestamp-millis"}}})
    schema["fields"][0]["type"] = json.loads((AVRO_DIR / "events" / "Envelope.avsc").read_text("utf-8"))
    with pytest.raises(ValueError, match=r"Urged\.seen: a logical type"):
        _info(schema, "event", "current")


def test_an_event_schema_the_compiled_writer_cannot_write_fails_when_the_codec_loads() -> None:
    schema = json.loads((AVRO_DIR / "events" / "Urged.avsc").read_text("utf-8"))
    schema["fields"][0]["type"] = json.loads((AVRO_DIR / "events" / "Envelope.avsc").read_text("utf-8"))
    schema["fields"].insert(1, {"name": "score", "type": "float"})
    with pytest.raises(ValueError, match=r"Urged\.score: the compiled event writer has no 'float'"):
        event_writer(schema)
    schema["fields"][1] = {"name": "score", "type": ["null", "string", "long"]}
    with pytest.raises(ValueError, match=r"Urged\.score: the compiled event writer takes only a nullable union"):
        event_writer(schema)


def rabin_crc64(text: str) -> str:
    """CRC-64-AVRO as the specification writes it, little-endian hex as in the frame."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in text.encode():
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little").hex()


def test_avsc_files_agree_with_the_domain_events() -> None:
    for name, cls in EVENT_TYPES.items():
        schema = json.loads((AVRO_DIR / "events" / f"{name}.avsc").read_text("utf-8"))
        fields = [f["name"] for f in schema["fields"]]
        assert fields[0] == "envelope" and fields[-1] == "hash", name
        assert fields[1:-1] == [f.name for f in dataclasses.fields(cls)], name
    files = {p.stem for p in (AVRO_DIR / "events").glob("*.avsc")} - {"Envelope"}
    assert files == set(EVENT_TYPES)


@pytest.mark.parametrize("release", sorted(p.name for p in HISTORY_DIR.glob("v*")))
def test_current_schemas_read_every_released_version(release: str) -> None:
    current = {s.name: s for s in load_schema_set(AVRO_DIR, "current")}
    for old in load_schema_set(HISTORY_DIR / release, release):
        assert old.name in current, f"{old.name} was removed: consumers of {release} data would break"
        if old.kind != "event":
            continue
        record = avro_record(event(EVENT_TYPES[old.name.rsplit(".", 1)[1]]))
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, old.parsed, record)
        buf.seek(0)
        read = fastavro.schemaless_reader(buf, old.parsed, current[old.name].parsed)
        assert read["envelope"]["case_id"] == "case-1"


def test_codec_decodes_messages_framed_with_a_released_fingerprint() -> None:
    codec = Codec()
    for release in sorted(HISTORY_DIR.glob("v*")):
        for old in load_schema_set(release, release.name):
            if old.kind != "event":
                continue
            record = avro_record(event(EVENT_TYPES[old.name.rsplit(".", 1)[1]]))
            buf = io.BytesIO()
            buf.write(old.header)
            fastavro.schemaless_writer(buf, old.parsed, record)
            assert codec.decode_event(buf.getvalue()).case_id == "case-1"


def test_commands_and_results_round_trip() -> None:
    codec = Codec()
    body = {"department": "bh-market", "note": None}
    data = codec.encode_command("dispatch", body, command_id="c", actor=Actor("s", Role.DISPATCHER), case_id="k")
    assert codec.decode_command(data) == ("dispatch", {"command_id": "c", "case_id": "k", "expected_seq": None,
                                                      "actor": {"system": "s", "role": "dispatcher",
                                                                "department": None, "person": None},
                                                      "correlation_id": None}, {"department": "bh-market"})
    result = {"command_id": "c", "status": "rejected",
              "error": {"code": "invalid_state", "message": "m", "details": {"state": "closed"}}}
    decoded = codec.decode_result(codec.encode_result(result))
    assert decoded["error"]["details"] == {"state": "closed"}


@pytest.mark.parametrize("data, reason", [
    (b"", "no C3 01 marker"), (b"\xc3\x01\x00\x00\x00\x00\x00\x00\x00\x00", "unknown schema fingerprint"),
])
def test_garbage_is_a_decode_error_not_a_crash(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        Codec().decode_event(data)
