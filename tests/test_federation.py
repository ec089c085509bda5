"""District -> city federation: two deployments (two system ids, two databases, one broker, two prefixes)."""

from __future__ import annotations

import uuid

import psycopg

from suqiu.base.config import Settings
from suqiu.domain.model import Actor, Role
from suqiu.schemas.codec import Codec
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime
from suqiu.stack.embedded import EmbeddedPostgres
from suqiu.store.keys import create_key
from suqiu.streams.federation import NAMESPACE
from suqiu.streams.topics import ensure_topics
from tests.conftest import Api, new_schema, submission
from tests.support.kafka import faust_worker, produce, read_topic
from tests.support.sla import eventually, query

CITY = "tj-city"


async def test_escalation_creates_a_linked_case_upstream_and_its_answer_comes_back(
        topics: Settings, runtime: Runtime, api: Api, postgres: EmbeddedPostgres) -> None:
    schema, city_dsn = new_schema(postgres, "c")
    assert topics.database_url
    # Each deployment authenticates the other's commands by the key it issued it (suqiu.streams.signing).
    with psycopg.connect(city_dsn, autocommit=True) as conn:
        issued_by_city = create_key(conn, topics.system_id, Role.SYSTEM, label="district federation")
    with psycopg.connect(topics.database_url, autocommit=True) as conn:
        issued_by_district = create_key(conn, CITY, Role.SYSTEM, label="city federation")
    district = topics.with_(federation={CITY: f"{schema}."}, federation_keys={CITY: issued_by_city})
    city = district.with_(database_url=city_dsn, system_id=CITY, topic_prefix=f"{schema}.",
                          federation={district.system_id: district.topic_prefix},
                          federation_keys={district.system_id: issued_by_district})
    await ensure_topics(city)
    city_rt = await Runtime(city, clock=runtime.clock).open()
    try:
        async with faust_worker(district, runtime.clock), faust_worker(city, runtime.clock):
            case = (await api.submit(jurisdiction="tj-teda"))["case_id"]
            await api.ok("dispatcher", case, "dispatch", department="bh-market")
            await api.ok("bh-market", case, "accept")
            await api.ok("dispatcher", case, "escalate", target_system=CITY, reason="涉及市级统筹，区级无法解决")

            upstream = await eventually(
                lambda: query(city, "SELECT case_id FROM source_refs WHERE source_system = %s AND source_ref = %s",
                              district.system_id, case), bool)
            assert upstream, "the city never got the case"
            city_case = upstream[0][0]
            link = query(city, "SELECT event_type, data FROM events WHERE case_id = %s AND seq = 1", city_case)[0]
            assert link[0] == "AppealSubmitted" and case.encode() in bytes(link[1])
            # The city handles it now: it gets the contact, sealed again under its own key.
            contact = submission()["enterprise"]["contact_phone"]
            assert contact.encode() not in bytes(link[1])
            upper = await city_rt.personal.opened([await city_rt.service.load(city_case)])
            assert (opened := upper[city_case]) is not None and opened.contact_phone == contact

            def run(type_name: str, role: Role, **body: object) -> CommandRequest:
                actor = Actor(CITY, role, "bh-market" if role is Role.DEPARTMENT else None)
                return CommandRequest(type_name, str(uuid.uuid4()), actor, body, case_id=city_case)

            for req in (run("dispatch", Role.DISPATCHER, department="bh-market"), run("accept", Role.DEPARTMENT),
                        run("reply", Role.DEPARTMENT, content="市级统筹协调完毕，用地指标已落实"),
                        run("close", Role.DISPATCHER, outcome="resolved", note="")):
                await city_rt.service.execute(req)

            answered = await eventually(
                lambda: query(district, "SELECT seq, data FROM events WHERE case_id = %s AND "
                                        "event_type = 'UpperLevelReplied'", case), bool)
            assert len(answered) == 1 and city_case.encode() in bytes(answered[0][1])
            assert "用地指标已落实".encode() in bytes(answered[0][1])
            status, view = await api.call("auditor", "GET", f"/appeals/{case}")
            assert status == 200 and view["status"] == "replied"

            # Redelivery: both bridges see their events again; nothing changes on either side.
            for s, case_id in ((district, case), (city, city_case)):
                rows = query(s, "SELECT data FROM events WHERE case_id = %s ORDER BY seq", case_id)
                assert s.kafka_bootstrap
                await produce(s.kafka_bootstrap, s.events_topic, [(case_id.encode(), bytes(r[0])) for r in rows])
            before = (query(district, "SELECT count(*) FROM events")[0][0], query(city, "SELECT count(*) FROM events")[0][0])
            # Each side answers the repeated command with its original result: proof it was seen again.
            codec = Codec()
            for s, system, case_id, events in ((city, district.system_id, case, 1), (district, CITY, city_case, 1)):
                escalate_seq = 4 if s is city else 5
                kind = "escalate" if s is city else "answer"
                command_id = str(uuid.uuid5(NAMESPACE, f"{system}/{case_id}/{escalate_seq}/{kind}"))
                assert s.kafka_bootstrap
                results = await read_topic(s.kafka_bootstrap, s.results_topic, 2 * events)
                mine = [codec.decode_result(r.value)["status"] for r in results if r.key == command_id.encode()]
                assert mine[0] in ("created", "accepted") and "duplicate" in mine[1:], mine
            # Each command between the two carries its CloudEvents attributes beside its signature.
            for s, sender, kind, case_id in ((city, district.system_id, "submit", case),
                                              (district, CITY, "upper_level_reply", city_case)):
                assert s.kafka_bootstrap
                sent = await read_topic(s.kafka_bootstrap, s.commands_topic, 1)
                ce = dict(sent[0].headers)
                assert ce["ce_specversion"] == b"1.0" and ce["ce_type"] == f"cn.suqiu.command.{kind}.v1".encode()
                assert ce["ce_source"] == f"/suqiu/{sender}/cases/{case_id}".encode()
                assert ce["ce_id"].decode() == codec.decode_command(sent[0].value)[1]["command_id"]
                assert ce["content-type"].startswith(b"avro/binary; fingerprint=") and "suqiu-signature" in ce
            after = (query(district, "SELECT count(*) FROM events")[0][0], query(city, "SELECT count(*) FROM events")[0][0])
            assert after == before
            assert query(city, "SELECT count(*) FROM source_refs WHERE source_ref = %s", case)[0][0] == 1
    finally:
        await city_rt.close()
