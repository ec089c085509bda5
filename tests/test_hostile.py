"""Hostile input is normal input: every boundary refuses with a 4xx naming the field, stores nothing,
and one bad item never fails its neighbours."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bench.fuzz import kafka_records
from suqiu.base.config import Settings
from suqiu.domain import events as e
from suqiu.domain.model import Actor, Enterprise, Role
from suqiu.projections.projector import Incoming, Projector
from suqiu.schemas.codec import Codec
from suqiu.service.runtime import Runtime
from tests.conftest import SYSTEM, Api, run_cli, stored, submission
from tests.support.kafka import faust_worker, produce, read_topic, read_topics
from tests.support.metrics import scrape, value
from tests.support.sla import caught_up, query, replay, snapshot

INTAKE = Actor(SYSTEM, Role.INTAKE, person="kafka-gw")


def refused(status: int, body: Any, field: str | None = None) -> None:
    assert 400 <= status < 500, (status, body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    if field is not None:
        assert body["error"]["details"].get("field") == field, body


HOSTILE_SUBMITS = [
    ("command_id", {"command_id": "a\u0000b"}),
    ("command_id", {"command_id": "   "}),
    ("command_id", {"command_id": "x" * 129}),
    ("source_ref", {"source_ref": "TJ\u0000-1"}),
    ("source_system", {"source_system": "hot\u0000line"}),
    ("source_ref", {"source_ref": "TJ\n1"}),
    ("title", {"title": "施工\u0000许可"}),
    ("title", {"title": "bell\u0007"}),
    ("content", {"content": "x" * 20001}),
    ("enterprise.name", {"enterprise": {"uscc": "91110000600037341L", "name": "某\u0000公司"}}),
    ("occurred_at", {"occurred_at": "0001-01-01T00:00:00+00:00"}),
    ("occurred_at", {"occurred_at": "9999-12-31T23:59:59+00:00"}),
    ("occurred_at", {"occurred_at": "2026-07-21T02:10:01+00:00"}),  # T0 + 10 min 1 s: past the clock skew
    ("expected_seq", {"expected_seq": 10**30}),
    ("expected_seq", {"expected_seq": 2**64}),
    ("expected_seq", {"expected_seq": 0}),
]


@pytest.mark.parametrize("field, change", HOSTILE_SUBMITS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(HOSTILE_SUBMITS)])
async def test_a_hostile_submit_is_refused_naming_the_field_and_stores_nothing(
        api: Api, settings: Settings, field: str, change: dict[str, Any]) -> None:
    before = stored(settings)
    status, body = await api.call("intake", "POST", "/appeals", submission(**change))
    refused(status, body, field)
    assert body["error"]["code"] == "invalid_input"
    assert stored(settings) == before


@pytest.mark.parametrize("raw, rule", [
    (b'{"command_id": "\\ud800", "title": "x"}', "UTF-8"),
    (b"[" * 1000 + b"]" * 1000, "depth"),
    (b'{"a": ' * 40 + b"1" + b"}" * 40, "depth"),
    (b'{"n": 1' + b"0" * 5000 + b"}", "integer"),
    (b'{"n": 99999999999999999999}', "integer"),
    (b'{"n": NaN}', "finite"),
    (b"\xff\xfe", "UTF-8"),
], ids=["surrogate", "array-depth", "object-depth", "huge-int", "int64", "nan", "not-utf8"])
async def test_a_hostile_json_body_is_a_400_and_stores_nothing(api: Api, settings: Settings, raw: bytes,
                                                              rule: str) -> None:
    before = stored(settings)
    status, body = await api.call("intake", "POST", "/appeals", raw=raw)
    refused(status, body)
    assert rule.lower() in json.dumps(body).lower(), body
    assert stored(settings) == before


async def test_hostile_paths_and_queries_are_refused(api: Api) -> None:
    for path in ("/appeals/a%00b", "/appeals/a%00b/history", "/departments/x%00/load", "/schemas/ab%00"):
        status, body = await api.call("auditor", "GET", path)
        refused(status, body)
    status, body = await api.call("auditor", "GET", "/appeals?after=a%00b")
    refused(status, body, "after")
    status, body = await api.do("dispatcher", "a\u0000b", "urge")
    refused(status, body)


async def raw_request(api: Api, request: bytes) -> tuple[int, bytes, bytes]:
    """One HTTP/1.1 request as bytes (headers no client library would send): status, headers, body."""
    url = urlsplit(api.base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


async def test_hostile_headers_and_encodings_answer_in_the_error_shape(api: Api, keys: dict[str, str],
                                                                     settings: Settings) -> None:
    before = stored(settings)
    good = json.dumps(submission()).encode()
    auth = f"Authorization: Bearer {keys['intake']}\r\n".encode()
    cases = {
        "bad key bytes": b"POST /v1/appeals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                         b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        "bad correlation id": b"POST /v1/appeals HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Correlation-Id: \xff\x00\r\n"
                              b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: "
                              + str(len(good)).encode() + b"\r\n\r\n" + good,
        "gzip that is not": b"POST /v1/appeals HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Encoding: gzip\r\n"
                            b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: "
                            + str(len(good)).encode() + b"\r\n\r\n" + good,
    }
    for name, request in cases.items():
        status, head, body = await raw_request(api, request)
        assert 400 <= status < 500, (name, status, body)
        assert b"application/json" in head, (name, head)
        refused(status, json.loads(body))
    status, body = await api.call("intake", "DELETE", "/appeals")
    assert status == 405 and body["error"]["code"] == "method_not_allowed", body
    status, body = await api.call(None, "GET", "/appeals")
    assert status == 401 and body["error"]["details"]["rule"], body
    assert stored(settings) == before


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x7f"], ids=["NUL", "SOH", "DEL"])
@pytest.mark.parametrize("header", ["Authorization: Bearer", "Cookie: suqiu_board="])
async def test_a_header_the_parser_refuses_is_never_quoted_back_or_logged(
        api: Api, keys: dict[str, str], header: str, char: str) -> None:
    secret = keys["dispatcher"]
    request = (f"GET /v1/appeals HTTP/1.1\r\nHost: x\r\n{header} {secret}{char}tail\r\nConnection: close\r\n"
               "\r\n").encode()
    with capture_logs() as logs:
        status, _, body = await raw_request(api, request)
    assert status == 400
    refused(status, json.loads(body))
    name = header.split(":")[0]
    assert f"in the {name} header (value not shown)" in json.loads(body)["error"]["message"]
    assert secret not in body.decode() and secret[:8] not in repr(logs), "a live key in the answer or the log"


async def test_content_encodings_other_than_gzip_and_deflate_are_415_and_store_nothing(
        api: Api, keys: dict[str, str], settings: Settings) -> None:
    before = stored(settings)
    good = json.dumps(submission()).encode()
    for encoding in ("rot13", "x-unknown", "compress", "deflate, br", "br", "zstd"):
        request = (f"POST /v1/appeals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keys['intake']}\r\n"
                   f"Content-Encoding: {encoding}\r\nContent-Type: application/json\r\nConnection: close\r\n"
                   f"Content-Length: {len(good)}\r\n\r\n").encode() + good
        status, _, body = await raw_request(api, request)
        assert status == 415, (encoding, status, body)
        answer = json.loads(body)
        assert answer["error"]["code"] == "unsupported_encoding" and "install" not in body.decode(), answer
    assert stored(settings) == before


async def test_a_body_that_is_not_gzip_is_a_400_without_a_traceback(api: Api, keys: dict[str, str],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    good = json.dumps(submission()).encode()
    request = (f"POST /v1/appeals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keys['intake']}\r\n"
               f"Content-Encoding: gzip\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(good)}\r\n\r\n").encode() + good
    with caplog.at_level(logging.INFO):
        status, _, body = await raw_request(api, request)
        await asyncio.sleep(0.2)  # aiohttp drains the rest of the body after the answer
    assert status == 400 and json.loads(body)["error"]["details"]["field"] == "Content-Encoding"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [], "an alert for a client's fault"


async def test_two_authorization_headers_are_refused(api: Api, keys: dict[str, str]) -> None:
    request = (f"GET /v1/appeals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keys['auditor']}\r\n"
               f"Authorization: Bearer {keys['dispatcher']}\r\nConnection: close\r\n\r\n").encode()
    status, _, body = await raw_request(api, request)
    assert status == 400 and json.loads(body)["error"]["details"]["field"] == "Authorization"


async def test_poison_requests_in_a_group_commit_fail_alone(api: Api, settings: Settings) -> None:
    good = [submission() for _ in range(60)]
    poison = [submission(source_ref=f"TJ\u0000{i}") for i in range(3)]
    answers = await asyncio.gather(*(api.call("intake", "POST", "/appeals", b) for b in [*poison, *good]))
    assert [s for s, _ in answers[:3]] == [400, 400, 400]
    assert [s for s, _ in answers[3:]] == [201] * 60, [b for s, b in answers[3:] if s != 201][:3]
    assert stored(settings)["source_refs"] == 60


# Any JSON value, for any field of a submit or a lifecycle command: hypothesis shrinks a 5xx to its cause.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
FIELDS = ["command_id", "source_system", "source_ref", "enterprise", "channel", "category", "priority",
          "jurisdiction", "title", "content", "occurred_at", "expected_seq", "type", "department", "note",
          "reason", "items", "working_days", "rating", "outcome", "clock", "due_at"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), JSON, min_size=1, max_size=4),
       lifecycle=st.booleans())
async def test_fuzzed_bodies_never_answer_5xx_and_a_refusal_stores_nothing(
        api: Api, settings: Settings, changes: dict[str, Any], lifecycle: bool) -> None:
    before = stored(settings)
    if lifecycle:
        body = {"type": "dispatch", "command_id": str(uuid.uuid4()), "department": "bh-market", **changes}
        status, answer = await api.call("dispatcher", "POST", "/appeals/no-such-case/commands", body)
    else:
        status, answer = await api.call("intake", "POST", "/appeals", submission(**changes))
    assert status < 500, (status, answer)
    if status >= 400:
        refused(status, answer)
        assert stored(settings) == before


async def test_kafka_intake_answers_every_hostile_record_and_carries_on(topics: Settings, runtime: Runtime,
                                                                        keys: dict[str, str]) -> None:
    s, codec = topics, Codec()
    assert s.kafka_bootstrap

    def submit(command_id: str, **change: Any) -> bytes:
        body = submission(**change)
        body.pop("command_id")
        return codec.encode_command("submit", body, command_id=command_id, actor=INTAKE)

    hostile = {
        "nul-command-id": submit("a\u0000b"),
        "blank-command-id": submit("   "),
        "nul-source-ref": submit(str(uuid.uuid4()), source_ref="TJ\u0000x"),
        "nul-case-id": codec.encode_command("urge", {"note": "x"}, command_id=str(uuid.uuid4()),
                                            actor=Actor(SYSTEM, Role.DISPATCHER), case_id="c\u0000"),
        "cut-frame": codec.encode_command("urge", {"note": "x"}, command_id=str(uuid.uuid4()),
                                            actor=Actor(SYSTEM, Role.DISPATCHER), case_id="no-such-case")[:-1],
        "huge": b"\xc3\x01" + b"\x00" * 900_000,  # over the inline limit of a dead letter
    }
    good = str(uuid.uuid4())
    before = stored(s)
    async with faust_worker(s, runtime.clock):
        await produce(s.kafka_bootstrap, s.commands_topic,
                      [(k.encode(), v, keys["intake"]) for k, v in hostile.items()]
                      + [(None, b""), (good.encode(), submit(good), keys["intake"])])
        # Four refusals and the good one answer with results; a cut frame, the huge one and the empty one
        # are dead letters.
        results = await read_topic(s.kafka_bootstrap, s.results_topic, 5, timeout=60)
        dlq = await read_topic(s.kafka_bootstrap, s.dlq_topic, 3, timeout=60)
    answers = {codec.decode_result(r.value)["command_id"]: codec.decode_result(r.value) for r in results}
    assert answers[good]["status"] == "created"
    rejected = [a for a in answers.values() if a["status"] == "rejected"]
    assert all(a["error"]["code"] == "invalid_input" for a in rejected), rejected
    # Each of the 8 records got exactly one answer: a result, or a dead letter with its reason.
    assert len(results) + len(dlq) == len(hostile) + 2
    assert (len(results), len(dlq)) == (5, 3), ([codec.decode_result(r.value) for r in results],
                                                         [dict(r.headers) for r in dlq])
    assert all(dict(r.headers).get("suqiu.dlq.reason") for r in dlq)
    parked = [dict(r.headers) for r in dlq if "suqiu.dlq.stored" in dict(r.headers)]
    assert len(parked) == 1 and parked[0]["suqiu.dlq.stored"].startswith(b"dead_letters/")
    assert query(s, "SELECT length(value) FROM dead_letters") == [(900_002,)]
    assert stored(s)["events"] == before["events"] + 1


async def test_events_stored_before_the_input_rules_still_project(topics: Settings, runtime: Runtime) -> None:
    # An older deployment accepted a NUL in a title; PostgreSQL cannot hold it in text or jsonb.
    at = datetime(2026, 7, 21, 2, 0, tzinfo=UTC)
    ev = e.Event(str(uuid.uuid4()), "legacy-1", 1, at, at, INTAKE, "c-1", "c-1", "c-1", e.AppealSubmitted(
        enterprise=Enterprise("91110000600037341L", "某\u0000公司"), channel="web", category="approval",
        priority="normal", jurisdiction="tj-binhai", title="标题\u0000", content="内容\u0000",
        source_system="web", source_ref="legacy\u0000"))
    assert topics.database_url
    async with await psycopg.AsyncConnection.connect(topics.database_url, autocommit=True) as conn:
        await Projector(Codec(), lambda: runtime.policy, lambda: at).apply(conn, [Incoming("t", 0, 0, ev)])
    assert query(topics, "SELECT title, enterprise_name FROM case_view WHERE case_id = 'legacy-1'") == \
        [("标题\ufffd", "某\ufffd公司")]
    assert query(topics, "SELECT data->>'title' FROM case_timeline WHERE case_id = 'legacy-1'") == [("标题\ufffd",)]


async def test_a_kafka_fuzz_of_320_records_gets_one_answer_each_and_the_store_matches(
        topics: Settings, runtime: Runtime, keys: dict[str, str]) -> None:
    s = topics
    assert s.kafka_bootstrap
    codec = Codec()  # built once: it loads and compiles every released schema
    records = kafka_records(320, random.Random(7), codec, keys["intake"])
    before = stored(s)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", max_request_size=3 * 1024 * 1024)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send(s.commands_topic, key=key, value=value, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()
    async with faust_worker(s, runtime.clock):
        got = await read_topics(s.kafka_bootstrap, [s.results_topic, s.dlq_topic], len(records), timeout=60)
        results, dlq = got[s.results_topic], got[s.dlq_topic]
        answers = [codec.decode_result(r.value) for r in results]
        created = [a for a in answers if a["status"] == "created"]
        for answer in created:
            await caught_up(s, answer["case_id"])
    assert len(results) + len(dlq) == len(records)
    refused = Counter(a["error"]["code"] for a in answers if a["status"] == "rejected")
    assert set(refused) == {"invalid_input", "unauthorized"}, refused  # the unsigned kind: unauthorized
    assert all(dict(r.headers).get("suqiu.dlq.reason") for r in dlq)
    assert stored(s)["events"] == before["events"] + len(created)  # nothing stored for a refusal
    assert any(dict(r.headers).get("suqiu.dlq.stored") for r in dlq)  # the 2 MB record, kept in PostgreSQL
    # The read models equal a fold of the store: a rebuild changes nothing.
    live = snapshot(s)
    assert (await replay(s, "rebuild"))[0] == 0
    assert snapshot(s) == live


async def test_a_case_the_read_models_cannot_take_is_quarantined_and_the_rest_go_on(
        topics: Settings, runtime: Runtime, api: Api) -> None:
    # An event on the topic whose predecessors the store does not hold (a store restored from an
    # older backup, say) cannot be folded: that case is held back, loudly, and no other is lost.
    good = [(await api.submit())["case_id"] for _ in range(3)]
    codec = Codec()
    rows = query(topics, "SELECT data FROM events WHERE case_id = ANY(%s) ORDER BY position", good)
    batch = [Incoming("t", 0, i, codec.decode_event(bytes(r[0]))) for i, r in enumerate(rows)]
    at = runtime.clock.now()
    orphan = e.Event(str(uuid.uuid4()), "orphan-1", 3, at, at, INTAKE, "c-o", "c-o", "c-o", e.Urged(note="x"))
    batch.insert(1, Incoming("t", 0, 99, orphan))
    assert topics.database_url
    async with await psycopg.AsyncConnection.connect(topics.database_url, autocommit=True) as conn:
        applied = await Projector(Codec(), lambda: runtime.policy, lambda: at).apply(conn, batch)
    assert applied == 3
    assert sorted(r[0] for r in query(topics, "SELECT case_id FROM case_view")) == sorted(good)
    # The batch is done with, and what was applied case by case is counted as applied.
    assert query(topics, 'SELECT "offset", applied FROM projection_offsets') == [(99, 3)]
    status, health = await api.call(None, "GET", "/health")
    assert status == 503 and health["status"] == "degraded", health
    quarantine = health["checks"]["quarantine"]
    assert quarantine["cases"] == 1 and quarantine["first"][0]["case_id"] == "orphan-1"
    assert quarantine["first"][0]["seq"] == 3 and "does not follow" in quarantine["first"][0]["error"]
    assert value(await scrape(f"{api.base}/metrics"), "suqiu_quarantined_cases") == 1
    # Once the cause is dealt with, a rebuild folds every stored case again and clears it.
    assert (await replay(topics, "rebuild"))[0] == 0
    status, health = await api.call(None, "GET", "/health")
    assert status == 200 and health["checks"]["quarantine"]["cases"] == 0, health
    assert value(await scrape(f"{api.base}/metrics"), "suqiu_quarantined_cases") == 0


async def test_a_sender_clock_a_few_minutes_ahead_is_accepted_and_the_appeal_dated_now(api: Api) -> None:
    body = await api.submit(occurred_at="2026-07-21T02:05:00+00:00")  # T0 + 5 min
    _, history = await api.call("auditor", "GET", f"/appeals/{body['case_id']}/history")
    assert history["events"][0]["occurred_at"] == history["events"][0]["recorded_at"] == "2026-07-21T02:00:00.000Z"


@pytest.mark.parametrize(("content", "said"), [
    (b"a = " + b"[" * 5000 + b"]" * 5000, "not valid TOML: nested too deeply"),  # tomllib recurses
    (b"\xb8\x00 = 1", "not UTF-8 text (byte 0"),
    (b"[columns\n", "not valid TOML: "),
])
def test_an_operators_file_that_is_not_toml_is_refused_in_a_line(
        tmp_path: Path, content: bytes, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The mapping, the SLA policy and the organisation file: one reader, the file named, exit 2.
    bad, rows = tmp_path / "bad.toml", tmp_path / "rows.csv"
    bad.write_bytes(content)
    rows.write_text("a\n", "utf-8")
    for argv in (["import", str(rows), "--mapping", str(bad)], ["policy", "check", str(bad)],
                 ["org", "check", str(bad)]):
        assert run_cli(["--log-level", "WARNING", *argv]) == 2, argv
        told = capsys.readouterr()
        assert f"{bad}: {said}" in told.out + told.err and "Traceback" not in told.err, (argv, told)
