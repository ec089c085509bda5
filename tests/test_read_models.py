"""Read models and department figures, from a real Faust worker, checked against figures worked out by hand."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from hypothesis import given, settings
from structlog.testing import capture_logs

from bench.replay import fill_store
from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.base.processes import GC_YOUNG
from suqiu.domain.model import Actor, Role
from suqiu.projections.projector import Incoming, Projector
from suqiu.projections.state import dump_case, load_case
from suqiu.schemas.codec import Codec
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime
from suqiu.stack.embedded import free_port
from suqiu.streams.projecting import Projected, ProjectorProcesses, Record
from suqiu.streams.publishing import STORED_COLUMNS, stored_record
from suqiu.streams.relay import OutboxRelay, run_relay
from suqiu.streams.sla import RETRY_AFTER, RETRY_SQL
from suqiu.streams.topics import partition_for
from tests.conftest import SYSTEM, Api, submission
from tests.support.domain import run, steps
from tests.support.kafka import committed_offsets, faust_worker, produce, read_topic
from tests.support.metrics import scrape, value
from tests.support.procs import processes
from tests.support.sla import (
    caught_up,
    cst,
    dispatched_into_2032,
    eventually,
    eventually_async,
    knowing_2027,
    query,
    replay,
    settled,
    snapshot,
    view_seq,
)


@settings(max_examples=100, deadline=None)
@given(steps)
def test_a_case_state_read_back_from_its_json_is_the_same_case(sequence: list[Any]) -> None:
    case, _, _ = run(sequence)
    assert load_case(dump_case(case)) == case


async def test_kpis_for_a_scripted_scenario_equal_the_figures_worked_out_by_hand(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    s = topics.with_(timer_interval=0.05)
    async with faust_worker(s, clock):
        # Tue 21 Jul 10:00: A, B, C to market regulation, D to the TEDA service centre (zone under Binhai).
        a, b, c, d = [(await api.submit())["case_id"] for _ in range(4)]
        for case in (a, b, c):
            await api.ok("dispatcher", case, "dispatch", department="bh-market")  # accept by 12:00
        await api.ok("dispatcher", d, "dispatch", department="teda-service")
        clock.set(cst(2026, 7, 21, 10, 30))
        await api.ok("bh-market", a, "accept")                    # on time
        clock.set(cst(2026, 7, 21, 13, 45))
        await api.ok("bh-market", b, "accept")                    # late: due 12:00; C is never accepted
        clock.set(cst(2026, 7, 22, 11, 0))
        await api.ok("bh-market", a, "reply", content="已协调加快审批")  # 2 + 4 + 2 = 8 working hours
        await api.ok("dispatcher", a, "close", outcome="resolved", note="企业确认")
        await api.ok("enterprise", a, "feedback", rating="satisfied", comment="")
        clock.set(cst(2026, 7, 22, 15, 30))
        await api.ok("bh-market", b, "reply", content="超出政策范围，已解释")  # 6 + 3 + 2 = 11 working hours
        await api.ok("dispatcher", b, "close", outcome="explained", note="")
        await api.ok("enterprise", b, "feedback", rating="unsatisfied", comment="未解决")
        await api.ok("dispatcher", b, "reopen", reason="企业不满意，重办")  # new assignment, accept by 17:30
        clock.set(cst(2026, 7, 22, 16, 0))
        for case in (a, b, c, d):
            await caught_up(s, case)

        status, load = await api.call("dispatcher", "GET", "/departments/bh-market/load")
        assert status == 200, load
        assert {k: load[k] for k in ("open", "due_soon", "overdue", "accepted_today", "closed_today")} == {
            "open": 2, "due_soon": 0, "overdue": 1, "accepted_today": 0, "closed_today": 2}
        assert load["handling_working_hours"] == {"median": 9.5, "p90": 10.7}
        # Response: A on time; B late; C overdue unaccepted; B's reopened assignment not yet due.
        assert load["response_rate"] == round(1 / 3, 4)
        assert load["on_time_rate"] == 1.0           # both replies before the 5-day deadline
        assert load["resolution_rate"] == 0.5        # resolved A / handled A, B
        assert load["satisfaction_rate"] == 0.5      # satisfied A / rated A, B
        assert load["reopen_rate"] == 0.5            # B reopened

        status, teda = await api.call("auditor", "GET", "/jurisdictions/tj-teda/kpis")
        assert status == 200 and teda["departments"] == ["teda-construction", "teda-service"]
        assert (teda["open"], teda["overdue"], teda["response_rate"]) == (1, 1, 0.0)
        status, binhai = await api.call("auditor", "GET", "/jurisdictions/tj-binhai/kpis")
        assert (binhai["open"], binhai["overdue"], binhai["closed_today"]) == (3, 2, 2)
        assert binhai["response_rate"] == 0.25       # 1 of A, B, C, D

        status, listing = await api.call("dispatcher", "GET", "/departments")
        market = next(x for x in listing["departments"] if x["code"] == "bh-market")
        assert market["load"] == {"open": 2, "due_soon": 0, "overdue": 1, "supervised": 0, "accepted_today": 0,
                              "closed_today": 2}

        status, page = await api.call("dispatcher", "GET", "/appeals?department=bh-market&overdue=true")
        assert [x["case_id"] for x in page["appeals"]] == [c] and page["appeals"][0]["sla_status"] == "overdue"
        status, page = await api.call("dispatcher", "GET", "/appeals?state=closed")
        assert [x["case_id"] for x in page["appeals"]] == [a]
        seen, after = [], None
        while True:
            status, page = await api.call("auditor", "GET", "/appeals?limit=3" + (f"&after={after}" if after else ""))
            seen += [x["case_id"] for x in page["appeals"]]
            if not (after := page["next"]):
                break
        assert sorted(seen) == sorted([a, b, c, d]) and len(seen) == 4
        ref = query(s, "SELECT source_ref FROM case_view WHERE case_id = %s", d)[0][0]
        status, page = await api.call("auditor", "GET", f"/appeals?q={ref}")  # the source's 工单编号
        assert status == 200 and [x["case_id"] for x in page["appeals"]] == [d]
        assert page["appeals"][0]["source_ref"] == ref and page["appeals"][0]["source_system"] == "hotline-12345"
        status, page = await api.call("auditor", "GET", "/appeals?q=" + quote("天津某某"))  # part of the name
        assert sorted(x["case_id"] for x in page["appeals"]) == sorted([a, b, c, d])
        for bad, field in (("state=open", "state"), ("limit=0", "limit"), ("overdue=yes", "overdue"),
                           ("department=nope", "department"), ("after=nope", "after"), ("sort=x", "sort"),
                           ("q=a%00b", "q"), ("q=" + "x" * 101, "q")):
            status, err = await api.call("auditor", "GET", f"/appeals?{bad}")
            assert status == 400 and err["error"]["details"]["field"] == field, (bad, err)
        status, _ = await api.call("auditor", "GET", "/departments/nope/load")
        assert status == 404

        # The timers may still be adding SLA events for C and D; the lag drains to zero.
        for _ in range(100):
            status, health = await api.call(None, "GET", "/health")
            if health["checks"]["lag"]["events"] == 0:
                break
            await asyncio.sleep(0.1)
        assert status == 200 and health["checks"]["lag"]["events"] == 0, health


async def test_a_return_in_time_is_a_response_and_a_case_taken_away_before_its_deadline_is_not_due(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    """响应率 (suqiu.domain.response): 签收 or 退回 by the accept deadline responds; an assignment
    transferred away before its deadline was never due; one taken away after it stays late."""
    s = topics.with_(timer_interval=0.05)
    async with faust_worker(s, clock):
        # Tue 21 Jul 10:00, each to market regulation: accept by 12:00.
        returned, moved, late_return, late_move = [(await api.submit())["case_id"] for _ in range(4)]
        for case in (returned, moved, late_return, late_move):
            await api.ok("dispatcher", case, "dispatch", department="bh-market")
        clock.set(cst(2026, 7, 21, 10, 40))
        await api.ok("bh-market", returned, "return", reason="不属于本部门职责")  # a timely response
        clock.set(cst(2026, 7, 21, 11, 0))
        await api.ok("dispatcher", moved, "transfer", department="bh-hrss", reason="改派")  # before it was due
        clock.set(cst(2026, 7, 21, 13, 45))
        await api.ok("bh-market", late_return, "return", reason="不属于本部门职责")  # late
        await api.ok("dispatcher", late_move, "transfer", department="bh-hrss", reason="改派")  # late, then moved
        clock.set(cst(2026, 7, 22, 16, 0))
        for case in (returned, moved, late_return, late_move):
            await caught_up(s, case)
        status, market = await api.call("dispatcher", "GET", "/departments/bh-market/load")
        assert status == 200, market
        counts = market["counts"]
        assert (counts["assigned"], counts["released"], counts["response_due"]) == (4, 1, 3)
        assert (counts["responded_on_time"], counts["accepted_on_time"]) == (1, 0)
        assert market["response_rate"] == round(1 / 3, 4)
        # bh-hrss never accepted either transfer: both are due and late.
        status, hrss = await api.call("dispatcher", "GET", "/departments/bh-hrss/load")
        assert (hrss["counts"]["response_due"], hrss["response_rate"]) == (2, 0.0)
        await settled(s, clock, [returned, moved, late_return, late_move])
        live = snapshot(s)
        code, _ = await replay(s, "rebuild")
        assert code == 0 and snapshot(s) == live, "a rebuild counts as the projector does"


async def test_redelivered_events_change_nothing(topics: Settings, runtime: Runtime, api: Api) -> None:
    s = topics
    case = (await api.submit())["case_id"]
    await api.ok("dispatcher", case, "dispatch", department="bh-market")
    await api.ok("bh-market", case, "accept")
    codec = Codec()
    rows = query(s, "SELECT data FROM events WHERE case_id = %s ORDER BY seq", case)
    batch = [Incoming(s.events_topic, 0, i, codec.decode_event(bytes(r[0]))) for i, r in enumerate(rows)]
    projector = Projector(codec, lambda: runtime.policy, runtime.clock.now)
    tables = ("case_view", "case_timeline", "sla_timers", "assignments")

    def snapshot() -> dict[str, list[tuple[object, ...]]]:
        return {t: query(s, f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}

    assert s.database_url
    async with await psycopg.AsyncConnection.connect(s.database_url, autocommit=True) as conn:
        # Only the last event arrives first: the projector fills the gap from the store.
        assert await projector.apply(conn, batch[2:]) == 1
        first = snapshot()
        assert first["case_view"][0][1] == 3 and len(first["case_timeline"]) == 3
        # A fresh projector (a restarted worker) sees the same events again, in one batch and singly.
        again = Projector(codec, lambda: runtime.policy, runtime.clock.now)
        assert await again.apply(conn, batch) == 0
        for item in batch:
            assert await again.apply(conn, [item]) == 0
    assert snapshot() == first
    assert query(s, "SELECT accepted_at IS NOT NULL FROM assignments WHERE case_id = %s", case) == [(True,)]


async def test_undecodable_event_goes_to_the_dlq_and_projection_continues(
        topics: Settings, runtime: Runtime, api: Api) -> None:
    s = topics
    assert s.kafka_bootstrap
    async with faust_worker(s, runtime.clock):
        await produce(s.kafka_bootstrap, s.events_topic, [(b"bad", b"\xc3\x01" + uuid.uuid4().bytes[:8] + b"junk"),
                                                          (b"worse", b"not avro")])
        case = (await api.submit())["case_id"]
        await caught_up(s, case)
        dlq = await read_topic(s.kafka_bootstrap, s.dlq_topic, 2)
        assert sorted(r.key for r in dlq) == [b"bad", b"worse"]
        reasons = [dict(r.headers)["suqiu.dlq.reason"].decode() for r in dlq]
        assert all("undecodable event" in r for r in reasons), reasons
        assert {dict(r.headers)["suqiu.dlq.source_topic"] for r in dlq} == {s.events_topic.encode()}


async def test_two_workers_split_the_partitions_and_fire_each_timer_once(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    s = topics.with_(timer_interval=0.05)
    cases = []
    async with faust_worker(s, clock) as one, faust_worker(s, clock) as two:
        owned = await eventually(
            lambda: [{tp.partition for tp in w.assignor.assigned_actives() if tp.topic == s.events_topic}
                     for w in (one, two)],
            lambda v: bool(v[0]) and bool(v[1]) and not (v[0] & v[1]) and len(v[0] | v[1]) == s.partitions,
            timeout=60)
        assert owned[0] and owned[1] and not owned[0] & owned[1], owned
        for _ in range(12):
            case = (await api.submit())["case_id"]
            await api.ok("dispatcher", case, "dispatch", department="bh-hrss")
            cases.append(case)
        clock.set(cst(2026, 7, 21, 12, 0))
        for case in cases:
            await eventually(lambda c=case: query(s, "SELECT count(*) FROM events WHERE case_id = %s AND "
                                                     "event_type = 'SlaBreached'", c)[0][0], lambda n: n == 1)
        for case in cases:
            await caught_up(s, case)
    counts = query(s, "SELECT event_type, count(*) FROM events WHERE event_type LIKE 'Sla%%' GROUP BY 1 ORDER BY 1")
    assert counts == [("SlaBreached", 12), ("SlaWarning", 12)]


def _projector_processes() -> set[int]:
    """This process's spawned children (the projector's)."""
    return {p for p, (parent, cmdline) in processes().items() if parent == os.getpid() and b"spawn_main" in cmdline}


async def test_a_killed_projector_process_is_replaced_and_nothing_is_missed(
        topics: Settings, runtime: Runtime, api: Api) -> None:
    s = topics.with_(projector_processes=2)  # two children: each owns its share of the partitions
    earlier = _projector_processes()  # another test's worker may still be winding its children down
    async with faust_worker(s, runtime.clock):
        await caught_up(s, (await api.submit())["case_id"])
        before = _projector_processes() - earlier
        assert len(before) == s.projector_processes, before
        submitting = asyncio.gather(*(api.submit() for _ in range(40)))
        await asyncio.sleep(0.05)
        killed = min(before)
        os.kill(killed, signal.SIGKILL)
        cases = [c["case_id"] for c in await submitting]
        for case in cases:
            await caught_up(s, case)
        after = _projector_processes() - earlier
        assert len(after) == s.projector_processes and killed not in after, (before, after)
    assert query(s, "SELECT count(*) FROM case_view WHERE case_id = ANY(%s)", cases) == [(40,)]
    assert query(s, "SELECT count(*) FROM case_timeline WHERE case_id = ANY(%s)", cases) == [(40,)]


async def test_the_projector_process_settles_the_gc(topics: Settings, runtime: Runtime) -> None:
    # Its cached cases and the batches in flight outlive young collections: with Python's
    # defaults it walked them in full collections (see README, Production).
    projector = ProjectorProcesses(topics, runtime.policy, 1)
    try:
        await projector.start(runtime.clock.now())
        child = projector._executors[0]
        assert child is not None
        threshold, frozen = await asyncio.gather(*(asyncio.wrap_future(child.submit(ask))
                                                   for ask in (gc.get_threshold, gc.get_freeze_count)))
    finally:
        projector.close()
    assert threshold[0] == GC_YOUNG
    assert frozen > 10_000  # what its imports and start-up built


async def test_a_worker_whose_calendar_cannot_place_a_deadline_holds_until_its_policy_is_fixed(
        topics: Settings, clock: ManualClock, tmp_path: Path) -> None:
    # The API knows 2027 (an override file), so its provisional days reach 2032; the worker was
    # started with the shipped policy, whose do not: its read models must wait, loudly, rather
    # than skip or crash-loop.
    s = topics
    fixed = knowing_2027(s, tmp_path)
    case = await dispatched_into_2032(fixed, clock)
    with capture_logs() as logs:
        async with faust_worker(s, clock):
            held = await eventually(
                lambda: [x for x in logs if x["event"].startswith("read models held")], bool, timeout=30)
            await asyncio.sleep(0.5)
            assert view_seq(s, case) < 2  # the dispatch is not in the read models, nor skipped
    assert held[0]["log_level"] == "error" and held[0]["year"] == 2032, held[0]
    assert "no working-day calendar for 2032" in held[0]["reason"]
    assert view_seq(s, case) < 2
    async with faust_worker(fixed, clock):  # restarted with the override: nothing was lost
        assert await caught_up(s, case, timeout=30) >= 2
    due = query(s, "SELECT resolve_due FROM case_view WHERE case_id = %s", case)[0][0]
    assert due.year == 2032


async def test_no_timer_outlives_its_case_across_batches_and_a_stale_concurrent_batch(
        settings: Settings, runtime: Runtime, api: Api) -> None:
    closed = (await api.submit())["case_id"]
    await api.ok("dispatcher", closed, "dispatch", department="bh-market")
    await api.ok("bh-market", closed, "accept")
    await api.ok("bh-market", closed, "reply", content="已办理")
    await api.ok("dispatcher", closed, "close", outcome="resolved")
    running = (await api.submit())["case_id"]
    await api.ok("dispatcher", running, "dispatch", department="bh-market")
    await api.ok("bh-market", running, "accept")
    codec = Codec()

    def stored(case: str) -> list[Incoming]:
        rows = query(settings, "SELECT data FROM events WHERE case_id = %s ORDER BY seq", case)
        return [Incoming("t", 0, i, codec.decode_event(bytes(r[0]))) for i, r in enumerate(rows)]

    def timers(case: str) -> list[tuple[Any, ...]]:
        return query(settings, "SELECT clock, kind, fire_at FROM sla_timers WHERE case_id = %s ORDER BY 1, 2", case)

    def projector() -> Projector:  # each a fresh process's: no cached state
        return Projector(codec, lambda: runtime.policy, runtime.clock.now)

    assert settings.database_url
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        # One case's events across two batches: the dispatch's timers go when the closure comes.
        await projector().apply(conn, stored(closed)[:2])
        assert timers(closed)
        await projector().apply(conn, stored(closed)[2:])
        assert timers(closed) == []
    # Two projectors on new cases at once (a rebalance, a redelivery): the later state commits
    # first, while the stale batch (submit and dispatch only) waits on its row; then the stale one.
    later_done, release = asyncio.Event(), asyncio.Event()

    async def later() -> None:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, conn.transaction():
            await projector().apply_in(conn, stored(closed) + stored(running), checkpoint=False)
            later_done.set()
            await release.wait()

    async def stale() -> None:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, conn.transaction():
            await projector().apply_in(conn, stored(closed)[:2] + stored(running)[:2], checkpoint=False)

    await conn_free(settings, closed, running)
    first = asyncio.create_task(later())
    await later_done.wait()
    second = asyncio.create_task(stale())
    await asyncio.sleep(0.3)  # the stale batch is now blocked on the rows the later one inserted
    release.set()
    await first
    await second
    assert timers(closed) == [], "a closed case holds no timer"
    assert [t[:2] for t in timers(running)] == [("resolve", "breach"), ("resolve", "warning")], \
        "the newer state's timers stay"
    assert view_seq(settings, closed) == 5 and view_seq(settings, running) == 3


async def test_a_timer_retried_while_its_case_closes_goes_with_the_case(
        settings: Settings, runtime: Runtime, api: Api) -> None:
    """The timers' retry (a refused command tried again in 60 s) rewrites its row while the
    projector applies the closure: the closure's delete must still find the row."""
    case_id = (await api.submit())["case_id"]
    await api.ok("dispatcher", case_id, "dispatch", department="bh-market")
    await api.ok("bh-market", case_id, "accept")
    await api.ok("bh-market", case_id, "reply", content="已办理")
    await api.ok("dispatcher", case_id, "close", outcome="resolved")
    codec = Codec()
    events = [Incoming("t", 0, i, codec.decode_event(bytes(r[0]))) for i, r in enumerate(
        query(settings, "SELECT data FROM events WHERE case_id = %s ORDER BY seq", case_id))]
    assert settings.database_url
    await conn_free(settings, case_id)
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await Projector(codec, lambda: runtime.policy, runtime.clock.now).apply(conn, events[:2])
    owed = query(settings, "SELECT clock, kind FROM sla_timers WHERE case_id = %s", case_id)
    assert owed, "the dispatch left timers"
    retrying = await psycopg.AsyncConnection.connect(settings.database_url)
    try:
        # The timer task has the row: its retry is written but not yet committed.
        await retrying.execute(RETRY_SQL, (runtime.clock.now() + RETRY_AFTER, case_id, *owed[0]))
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
            closing = asyncio.create_task(
                Projector(codec, lambda: runtime.policy, runtime.clock.now).apply(conn, events[2:]))
            await asyncio.sleep(0.3)  # the closure's delete now waits on the retried row
            assert not closing.done()
            await retrying.commit()
            await closing
    finally:
        await retrying.close()
    assert view_seq(settings, case_id) == 5
    assert query(settings, "SELECT clock, kind FROM sla_timers WHERE case_id = %s", case_id) == [], \
        "a closed case holds no timer, retried or not"


async def conn_free(settings: Settings, *cases: str) -> None:
    """No read-model rows for `cases`: as if no projector had seen them yet."""
    assert settings.database_url
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        for table in ("case_view", "sla_timers", "case_timeline", "assignments", "closures"):
            await conn.execute(f"DELETE FROM {table} WHERE case_id = ANY(%s)", (list(cases),))


async def test_a_republished_history_is_passed_over_undecoded_by_its_seq_header(
        topics: Settings, runtime: Runtime, api: Api) -> None:
    # After a broker loss the relay republishes the store: what the read models hold moves the
    # offsets on without being decoded (its bytes here are not even Avro), the rest applies.
    s = topics
    case = (await api.submit())["case_id"]
    await api.ok("dispatcher", case, "dispatch", department="bh-market")
    await api.ok("bh-market", case, "accept")
    stored = query(s, f"SELECT {STORED_COLUMNS} FROM events WHERE case_id = %s ORDER BY seq", case)
    records: list[Record] = []
    for offset, row in enumerate(stored):
        key, value, headers = stored_record(s.system_id, *row)
        records.append((s.events_topic, 0, offset, key.encode(), value, headers))
    projector = ProjectorProcesses(s, runtime.policy, 1)
    try:
        assert await projector.apply(records[:2], runtime.clock.now()) == Projected()
        assert view_seq(s, case) == 2
        republished = [(t, p, 100 + o, k, b"not avro", h) for t, p, o, k, _, h in records[:2]]
        garbled_new = (s.events_topic, 0, 102, records[2][3], b"not avro", records[2][5])
        assert await projector.apply(republished, runtime.clock.now()) == Projected()  # nothing decoded
        offsets = query(s, 'SELECT "offset", applied FROM projection_offsets WHERE topic = %s', s.events_topic)
        assert offsets == [(101, 2)]
        # The relay found the read models hold partition 0's republished history up to 5000: a
        # batch all held is told to seek past it; one that is not held, or not far enough, is not.
        query(s, 'INSERT INTO republished_held (topic, partition, "offset") VALUES (%s, 0, 5000)', s.events_topic)
        assert await projector.apply(republished, runtime.clock.now()) == Projected(skip_to={0: 5001})
        checkpoint = 'SELECT "offset" FROM projection_offsets WHERE topic = %s'
        assert query(s, checkpoint, s.events_topic) == [(5000,)]  # the checkpoint moves with the seek
        near = [(t, p, 4000 + o, k, v, h) for t, p, o, k, v, h in republished]
        assert await projector.apply(near, runtime.clock.now()) == Projected()
        assert query(s, checkpoint, s.events_topic) == [(5000,)]  # read before the seek: it stays
        # A record the read models do not hold is decoded as ever: bad bytes are a dead letter.
        dead = await projector.apply([garbled_new, *republished], runtime.clock.now())
        assert len(dead.dead_letters) == 1 and not dead.skip_to and view_seq(s, case) == 2
        assert await projector.apply([(s.events_topic, 0, 103, *records[2][3:])], runtime.clock.now()) == Projected()
        assert view_seq(s, case) == 3
    finally:
        projector.close()


async def test_after_a_broker_loss_the_projector_skips_the_history_it_holds_and_loses_nothing(
        topics: Settings, runtime: Runtime) -> None:
    # A store the read models hold, a broker that lost it all: the relay republishes the store,
    # and the projector seeks past what it holds (suqiu.streams.catchup) rather than reading it again.
    s = topics
    assert s.database_url and s.kafka_bootstrap
    fill_store(s.database_url, 1_200, 10)  # 4,000 events a partition: past SKIP_AHEAD
    assert (await replay(s, "rebuild"))[0] == 0
    query(s, "INSERT INTO relay_state (topic, epoch) VALUES (%s, 'lost-in-the-test') ON CONFLICT (topic) "
             "DO UPDATE SET epoch = EXCLUDED.epoch", s.events_topic)
    # The relay alone first: the whole store is on the new topic before any projector reads it.
    relay = asyncio.create_task(run_relay(s))
    try:
        republished = "SELECT epoch <> 'lost-in-the-test' AND NOT EXISTS (SELECT FROM outbox) FROM relay_state"
        assert await eventually(lambda: query(s, republished)[0][0], bool, timeout=60)
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
    port = free_port()
    async with faust_worker(s.with_(metrics_port=port), runtime.clock) as app:
        # New cases until every partition has one (twelve missed one in 2% of runs): they are
        # not held and must apply.
        new: list[str] = []
        while len(new) < 12 or {partition_for(c, s.partitions) for c in new} != set(range(s.partitions)):
            body = submission()
            new.append((await runtime.service.execute(CommandRequest(
                "submit", body.pop("command_id"), Actor(SYSTEM, Role.INTAKE), body))).case_id)
        for case in new:
            await caught_up(s, case, timeout=60)
        heads = dict(query(s, 'SELECT partition, "offset" FROM relay_offsets WHERE topic = %s', s.events_topic))
        assert sum(o + 1 for o in heads.values()) == 12_000 + len(new)  # the store again, and the new cases
        assert {partition_for(case, s.partitions) for case in new} == set(heads)
        checkpoint = 'SELECT partition, "offset" FROM projection_offsets WHERE topic = %s'
        assert dict(await eventually(lambda: query(s, checkpoint, s.events_topic),
                                     lambda rows: dict(rows) == heads)) == heads
        # Faust commits past what was skipped: a restart resumes at the end, not before the skip.
        ends = {p: o + 1 for p, o in heads.items()}
        assert await eventually_async(lambda: committed_offsets(s, app.conf.id), lambda c: c == ends,
                                      timeout=30) == ends
        skipped = value(await scrape(f"http://127.0.0.1:{port}/metrics"), "suqiu_projector_skipped_events_total")
    assert skipped > 6_000, skipped  # most of the 12,000 republished events were never read again
    # What the live read models hold equals a rebuild from the store: nothing was skipped that was needed.
    live = snapshot(s)
    assert (await replay(s, "rebuild"))[0] == 0
    assert snapshot(s) == live


async def test_a_relay_taking_over_mid_republish_goes_on_measuring_what_the_read_models_hold(
        topics: Settings) -> None:
    # The relay doing a republish dies part-way; the one that takes over (another worker's, or
    # the same after a restart) finds the broker holding the new epoch and must resume the
    # measurement, or the projector reads the rest of the history record by record.
    s = topics
    assert s.database_url
    fill_store(s.database_url, 600, 10)
    assert (await replay(s, "rebuild"))[0] == 0  # the read models hold all 6,000 events
    query(s, "INSERT INTO relay_state (topic, epoch) VALUES (%s, 'lost-in-the-test') ON CONFLICT (topic) "
             "DO UPDATE SET epoch = EXCLUDED.epoch", s.events_topic)
    queued = "SELECT count(*) FROM outbox"
    first = asyncio.create_task(OutboxRelay(s, batch=10).run())
    try:
        await eventually(lambda: query(s, queued)[0][0], lambda n: 0 < n < 5_000, timeout=60)
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    assert 0 < query(s, queued)[0][0] < 6_000  # cut off during the republish
    still = "SELECT republish_open FROM relay_state WHERE topic = %s"
    assert query(s, still, s.events_topic) == [([0, 1, 2],)]  # every partition held so far
    second = asyncio.create_task(OutboxRelay(s, batch=10).run())
    try:
        await eventually(lambda: query(s, still, s.events_topic), lambda rows: rows == [(None,)], timeout=60)
    finally:
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
    assert query(s, queued)[0][0] == 0
    heads = dict(query(s, 'SELECT partition, "offset" FROM relay_offsets WHERE topic = %s', s.events_topic))
    marks = dict(query(s, 'SELECT partition, "offset" FROM republished_held WHERE topic = %s', s.events_topic))
    assert len(heads) == s.partitions and marks == heads  # held to the end of every partition
