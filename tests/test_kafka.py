"""Kafka paths with the real broker and a real Faust worker: commands, results, DLQ, events topic."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime

import psycopg

from suqiu.base.config import Settings
from suqiu.domain.model import Actor, Role
from suqiu.schemas.codec import Codec
from suqiu.service.runtime import Runtime
from suqiu.streams.signing import sign
from tests.conftest import SYSTEM, Api, stored
from tests.support.kafka import faust_worker, produce, read_topic
from tests.support.sla import query, submit_body

INTAKE = Actor(SYSTEM, Role.INTAKE, person="kafka-gw")
DISPATCHER = Actor(SYSTEM, Role.DISPATCHER)


def store_events(settings: Settings) -> list[tuple[str, int, bytes]]:
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT case_id, seq, data FROM events ORDER BY position").fetchall()
    return [(r[0], r[1], bytes(r[2])) for r in rows]


async def test_commands_over_kafka_get_results_and_same_rules_as_http(topics: Settings, runtime: Runtime,
                                                                     keys: dict[str, str]) -> None:
    s, codec = topics, Codec()
    assert s.kafka_bootstrap
    async with faust_worker(s, runtime.clock):
        submit_id = str(uuid.uuid4())
        await produce(s.kafka_bootstrap, s.commands_topic, [
            (submit_id.encode(), codec.encode_command("submit", submit_body(), command_id=submit_id, actor=INTAKE),
             keys["intake"]),
        ])
        results = await read_topic(s.kafka_bootstrap, s.results_topic, 1)
        first = codec.decode_result(results[0].value)
        assert results[0].key == submit_id.encode()
        assert first["status"] == "created" and first["seq"] == 1
        case_id = first["case_id"]
        cmds = [
            ("dispatch", {"department": "bh-market", "note": "请处理"}, "dispatcher"),
            ("accept", {}, "bh-hrss"),  # wrong department: 403 rule
            ("reply", {"content": "x"}, "dispatcher"),                       # wrong role
            ("urge", {"note": "快"}, "dispatcher"),
        ]
        ids = []
        for type_name, body, who in cmds:
            cid = str(uuid.uuid4())
            ids.append(cid)
            await produce(s.kafka_bootstrap, s.commands_topic, [
                (case_id.encode(), codec.encode_command(type_name, body, command_id=cid, actor=DISPATCHER,
                                                        case_id=case_id), keys[who]),
            ])
        # A redelivered command answers with the original result and stores nothing.
        await produce(s.kafka_bootstrap, s.commands_topic, [
            (case_id.encode(), codec.encode_command("urge", {"note": "快"}, command_id=ids[-1], actor=DISPATCHER,
                                                    case_id=case_id), keys["dispatcher"]),
        ])
        records = await read_topic(s.kafka_bootstrap, s.results_topic, 6)
        by_id = defaultdict(list)
        for r in records:
            res = codec.decode_result(r.value)
            by_id[res["command_id"]].append(res)
        assert by_id[ids[0]][0]["status"] == "accepted" and by_id[ids[0]][0]["seq"] == 2
        assert by_id[ids[1]][0]["status"] == "rejected"
        assert by_id[ids[1]][0]["error"]["code"] == "forbidden"
        assert "department scoping" in by_id[ids[1]][0]["error"]["details"]["rule"]
        assert by_id[ids[2]][0]["error"]["code"] == "forbidden"
        assert [r["status"] for r in by_id[ids[3]]] == ["accepted", "duplicate"]
        assert by_id[ids[3]][1]["seq"] == 3
        # A deadline past the provisional calendar: a rejected result, not a crashed agent.
        runtime.clock.set(datetime(2031, 12, 29, 2, 0, tzinfo=UTC))  # type: ignore[attr-defined]
        second, late, urge = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        await produce(s.kafka_bootstrap, s.commands_topic, [
            (second.encode(), codec.encode_command("submit", submit_body(), command_id=second, actor=INTAKE),
             keys["intake"])])
        results = {codec.decode_result(r.value)["command_id"]: codec.decode_result(r.value)
                   for r in await read_topic(s.kafka_bootstrap, s.results_topic, 7)}
        new_case = results[second]["case_id"]
        await produce(s.kafka_bootstrap, s.commands_topic, [
            (new_case.encode(), codec.encode_command("dispatch", {"department": "bh-market"}, command_id=late,
                                                     actor=DISPATCHER, case_id=new_case), keys["dispatcher"]),
            (new_case.encode(), codec.encode_command("urge", {"note": "年底"}, command_id=urge, actor=DISPATCHER,
                                                     case_id=new_case), keys["dispatcher"]),
        ])
        results = {codec.decode_result(r.value)["command_id"]: codec.decode_result(r.value)
                   for r in await read_topic(s.kafka_bootstrap, s.results_topic, 9)}
        assert results[late]["status"] == "rejected", results[late]
        assert results[late]["error"]["code"] == "calendar_unknown"
        assert results[late]["error"]["details"]["year"] == 2032
        assert results[urge]["status"] == "accepted" and results[urge]["seq"] == 2  # the agent carries on
    seqs = defaultdict(list)
    for case, seq, _ in store_events(s):
        seqs[case].append(seq)
    # (The first case's SLA timers fire once the clock jumps to December: its seq 4 on are theirs.)
    assert seqs[case_id][:3] == [1, 2, 3] and seqs[new_case] == [1, 2]


async def test_undecodable_commands_go_to_the_dlq_and_the_next_good_one_is_processed(
    topics: Settings, runtime: Runtime, keys: dict[str, str]
) -> None:
    s, codec = topics, Codec()
    assert s.kafka_bootstrap
    async with faust_worker(s, runtime.clock):
        good_id = str(uuid.uuid4())
        unknown_fp = b"\xc3\x01" + b"\x01\x02\x03\x04\x05\x06\x07\x08" + b"\x00\x00"
        truncated = codec.encode_command("submit", submit_body(), command_id="t", actor=INTAKE)[:30]
        await produce(s.kafka_bootstrap, s.commands_topic, [
            (b"garbage", b"\x00\xffnot avro at all"),
            (b"unknown-fp", unknown_fp),
            (b"truncated", truncated),
            (good_id.encode(), codec.encode_command("submit", submit_body(), command_id=good_id, actor=INTAKE),
             keys["intake"]),
        ])
        dlq = await read_topic(s.kafka_bootstrap, s.dlq_topic, 3)
        results = await read_topic(s.kafka_bootstrap, s.results_topic, 1)
    assert sorted(r.key for r in dlq) == [b"garbage", b"truncated", b"unknown-fp"]
    reasons = {r.key: dict(r.headers)["suqiu.dlq.reason"].decode() for r in dlq}
    assert "no C3 01 marker" in reasons[b"garbage"]
    assert "unknown schema fingerprint 0102030405060708" in reasons[b"unknown-fp"]
    assert "undecodable" in reasons[b"truncated"]
    assert {r.key: r.value for r in dlq}[b"garbage"] == b"\x00\xffnot avro at all"  # untouched
    assert codec.decode_result(results[0].value)["status"] == "created"
    assert stored(s)["events"] == 1


async def test_every_stored_event_is_on_the_topic_byte_for_byte_in_case_order(
    topics: Settings, runtime: Runtime, api: Api
) -> None:
    s = topics
    assert s.kafka_bootstrap
    async with faust_worker(s, runtime.clock):
        cases = [(await api.submit())["case_id"] for _ in range(6)]
        for case in cases:
            await api.ok("dispatcher", case, "dispatch", department="bh-market")
            await api.ok("bh-market", case, "accept")
            await api.ok("dispatcher", case, "urge", note="请加快")
        records = await read_topic(s.kafka_bootstrap, s.events_topic, 24)
    in_store = store_events(s)
    assert len(in_store) == 24
    on_topic = [(r.key.decode(), r.value) for r in records]
    assert sorted(on_topic) == sorted((c, d) for c, _, d in in_store)
    codec = Codec()
    per_case: dict[str, list[int]] = defaultdict(list)
    for r in records:
        event = codec.decode_event(r.value)
        assert event.case_id == r.key.decode()
        assert dict(r.headers)["event_type"].decode() == event.event_type
        per_case[event.case_id].append(event.seq)
    assert all(seqs == [1, 2, 3, 4] for seqs in per_case.values())


async def test_the_actor_is_the_signing_key_never_the_payload(topics: Settings, runtime: Runtime,
                                                                keys: dict[str, str]) -> None:
    s, codec = topics, Codec()
    assert s.kafka_bootstrap
    before = stored(s)
    forged, unsigned, tampered, good = (str(uuid.uuid4()) for _ in range(4))
    as_dispatcher = codec.encode_command("submit", submit_body(), command_id=forged, actor=DISPATCHER)
    signed = codec.encode_command("submit", submit_body(), command_id=tampered, actor=INTAKE)
    async with faust_worker(s, runtime.clock):
        await produce(s.kafka_bootstrap, s.commands_topic, [
            # Claims to be a dispatcher, signed by an auditor's key: the auditor acts, and may not.
            (forged.encode(), as_dispatcher, keys["auditor"]),
            (unsigned.encode(), codec.encode_command("submit", submit_body(), command_id=unsigned, actor=INTAKE)),
            # Signed by the intake key, then changed on the way: the signature no longer holds.
            (tampered.encode(), signed.replace("施工".encode(), "伪造".encode()), sign(keys["intake"], signed)),
            (good.encode(), codec.encode_command("submit", submit_body(), command_id=good, actor=DISPATCHER),
             keys["intake"]),
        ])
        results = {codec.decode_result(r.value)["command_id"]: codec.decode_result(r.value)
                   for r in await read_topic(s.kafka_bootstrap, s.results_topic, 4)}
    assert results[forged]["error"]["code"] == "forbidden", results[forged]
    assert results[unsigned]["error"]["code"] == "unauthorized"
    assert "unsigned" in results[unsigned]["error"]["message"]
    assert results[tampered]["error"]["code"] == "unauthorized"
    assert results[good]["status"] == "created"
    assert stored(s)["events"] == before["events"] + 1
    actor = query(s, "SELECT data FROM events WHERE case_id = %s", results[good]["case_id"])
    assert b"intake" in bytes(actor[0][0]) and b"dispatcher" not in bytes(actor[0][0])
