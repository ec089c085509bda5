"""Per-jurisdiction feeds: a zone's topic carries exactly its cases' events, same bytes, same order."""

from __future__ import annotations

from collections import defaultdict

from suqiu.base.config import Settings
from suqiu.schemas import cloudevents
from suqiu.schemas.codec import Codec
from suqiu.service.runtime import Runtime
from suqiu.streams.topics import ensure_topics, feed_topic
from tests.conftest import Api, submission
from tests.support.kafka import faust_worker, read_topic
from tests.support.sla import caught_up, query


async def test_a_jurisdiction_feed_carries_its_subtree_only(settings: Settings, runtime: Runtime, api: Api) -> None:
    s = settings.with_(jurisdiction_feeds=("tj-teda", "tj-binhai"))
    await ensure_topics(s)
    assert s.kafka_bootstrap
    async with faust_worker(s, runtime.clock):
        teda = [(await api.submit(jurisdiction="tj-teda"))["case_id"] for _ in range(3)]
        ftz = (await api.submit(jurisdiction="tj-ftz"))["case_id"]
        for case in [*teda, ftz]:
            await api.ok("dispatcher", case, "dispatch", department="bh-market")
            await api.ok("dispatcher", case, "urge", note="请尽快")
        for case in [*teda, ftz]:
            await caught_up(s, case)
        teda_feed = await read_topic(s.kafka_bootstrap, feed_topic(s, "tj-teda"), 9)
        district = await read_topic(s.kafka_bootstrap, feed_topic(s, "tj-binhai"), 12)
        everything = await read_topic(s.kafka_bootstrap, s.events_topic, 12)
    # A subscriber never sees the contact in plain text: every record of the topic and the feeds scanned.
    seeded = [v.encode() for v in (submission()["enterprise"]["contact_phone"], submission()["enterprise"]["contact_name"])]
    scanned = [rec.value + b"".join(v for _, v in rec.headers) for rec in [*everything, *teda_feed, *district]]
    assert len(scanned) == 33 and not [v for v in seeded for blob in scanned if v in blob]
    stored = {(r[0], r[1]): bytes(r[2]) for r in query(s, "SELECT case_id, seq, data FROM events")}
    by_case: dict[str, list[bytes]] = defaultdict(list)
    codec = Codec()
    for rec in teda_feed:
        assert rec.key is not None
        by_case[rec.key.decode()].append(rec.value)
        ev = codec.decode_event(rec.value)  # the events topic's headers, CloudEvents' too, as the relay set them
        assert dict(rec.headers) == {"event_type": ev.event_type.encode(), "event_id": ev.event_id.encode(),
                                     "seq": str(ev.seq).encode(), **dict(cloudevents.headers(
                                         s.system_id, ev.case_id, ev.event_type, ev.event_id, ev.occurred_at,
                                         rec.value))}
    assert sorted(by_case) == sorted(teda)  # the free-trade zone's case is not in TEDA's feed
    for case, values in by_case.items():
        assert values == [stored[(case, seq)] for seq in (1, 2, 3)]  # same bytes, in order
    # The district's feed holds every case of its zones.
    assert {rec.key.decode() for rec in district if rec.key} == {*teda, ftz}
    assert len(district) == 12
