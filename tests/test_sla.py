"""SLA timers in a real Faust worker on the real broker and PostgreSQL, with an injected clock."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.domain.model import Actor, Role
from suqiu.domain.sla import CalendarError
from suqiu.projections.projector import Incoming, Projector
from suqiu.schemas.codec import Codec
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime
from suqiu.streams.sla import SlaTimers, roll_out_policy
from tests.conftest import Api
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, cst, eventually, query, sla_events, submit_body


async def test_accept_clock_warns_breaches_and_supervises_once_each(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    s = topics.with_(timer_interval=0.05)
    async with faust_worker(s, runtime.clock):
        case = (await api.submit())["case_id"]
        await api.ok("dispatcher", case, "dispatch", department="bh-market")  # Tue 10:00, accept by 12:00
        await caught_up(s, case)
        due = query(s, "SELECT accept_due, resolve_due FROM case_view WHERE case_id = %s", case)[0]
        assert due[0] == cst(2026, 7, 21, 12, 0)
        # 5 working days of 7 h from Tue 10:00 is the next Tue 10:00.
        assert due[1] == cst(2026, 7, 28, 10, 0)

        clock.set(cst(2026, 7, 21, 11, 35))  # before the 80 % mark (11:36): nothing
        await caught_up(s, case)
        assert sla_events(s, case) == []
        clock.set(cst(2026, 7, 21, 11, 36))
        got = await eventually(lambda: sla_events(s, case), lambda v: len(v) == 1)
        assert got == [("SlaWarning", "accept")]
        clock.set(cst(2026, 7, 21, 12, 0))
        got = await eventually(lambda: sla_events(s, case), lambda v: len(v) == 2)
        assert got[1] == ("SlaBreached", "accept")
        # Supervision 4 working hours after the breach: the lunch break does not count.
        clock.set(cst(2026, 7, 21, 17, 29))
        await caught_up(s, case)
        assert len(sla_events(s, case)) == 2
        clock.set(cst(2026, 7, 21, 17, 30))
        got = await eventually(lambda: sla_events(s, case), lambda v: len(v) == 3)
        assert got[2] == ("SupervisionOpened", "accept")
        clock.set(cst(2026, 7, 22, 17, 30))  # a day on: still exactly one of each
        await caught_up(s, case)
        status, body = await api.call("dispatcher", "GET", f"/appeals/{case}")
        assert status == 200
        assert body["sla_status"] == "overdue" and body["supervised"] is True
        assert sla_events(s, case) == [("SlaWarning", "accept"), ("SlaBreached", "accept"),
                                       ("SupervisionOpened", "accept")]


async def test_resolve_clock_holiday_pause_extension_and_transfer(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    s = topics.with_(timer_interval=0.05)

    async def resolve_due(case: str) -> datetime:
        await caught_up(s, case)
        return query(s, "SELECT resolve_due FROM case_view WHERE case_id = %s", case)[0][0]

    async with faust_worker(s, runtime.clock):
        # Wed 30 Sep 2026 10:00, the day before the National Day holiday (1-7 Oct); Sat 10 Oct is a
        # make-up working day (调休): 6 h that Wed + 8, 9, 10 (Sat) and 12 Oct + 1 h = Tue 13 Oct 10:00.
        clock.set(cst(2026, 9, 30, 10, 0))
        holiday, paused, extended, moved = [(await api.submit())["case_id"] for _ in range(4)]
        for case in (holiday, paused, extended, moved):
            await api.ok("dispatcher", case, "dispatch", department="bh-market")
        assert await resolve_due(holiday) == cst(2026, 10, 13, 10, 0)
        for case in (holiday, paused, extended):
            await api.ok("bh-market", case, "accept")

        # Transfer at 11:00: a new accept clock for the new department, the same resolve clock.
        clock.set(cst(2026, 9, 30, 11, 0))
        await api.ok("dispatcher", moved, "transfer", department="bh-hrss", reason="属人社局职责")
        await caught_up(s, moved)
        row = query(s, "SELECT accept_due, resolve_due FROM case_view WHERE case_id = %s", moved)[0]
        assert row[0] == cst(2026, 9, 30, 14, 30)  # 11:00-12:00, then 13:30-14:30
        assert row[1] == cst(2026, 10, 13, 10, 0)

        # Materials requested Wed 11:00, supplied Thu 8 Oct 11:00: 1 + 4 + 2 = 7 working hours paused.
        await api.ok("bh-market", paused, "request_materials", items=["营业执照副本"], note="请补充")
        clock.set(cst(2026, 10, 8, 11, 0))
        await api.ok("enterprise", paused, "supply_materials", note="已上传")
        assert await resolve_due(paused) == cst(2026, 10, 14, 10, 0)
        # An extension of 2 working days moves the resolve deadline to Thu 15 Oct 10:00.
        await api.ok("bh-market", extended, "request_extension", working_days=2, reason="需现场核查")
        await api.ok("dispatcher", extended, "grant_extension")
        assert await resolve_due(extended) == cst(2026, 10, 15, 10, 0)

        # Just before the holiday case's deadline: its resolve clock has only warned.
        clock.set(cst(2026, 10, 13, 9, 59))
        await eventually(lambda: sla_events(s, holiday), lambda v: ("SlaWarning", "resolve") in v)
        assert ("SlaBreached", "resolve") not in sla_events(s, holiday)
        clock.set(cst(2026, 10, 13, 10, 0))
        got = await eventually(lambda: sla_events(s, holiday), lambda v: ("SlaBreached", "resolve") in v)
        assert got == [("SlaWarning", "resolve"), ("SlaBreached", "resolve")]
        # The paused and extended cases are not overdue yet; the transferred one breached acceptance.
        for case in (paused, extended):
            await caught_up(s, case)
            assert ("SlaBreached", "resolve") not in sla_events(s, case)
        await eventually(lambda: sla_events(s, moved), lambda v: ("SlaBreached", "accept") in v)
        clock.set(cst(2026, 10, 14, 10, 0))
        await eventually(lambda: sla_events(s, paused), lambda v: ("SlaBreached", "resolve") in v)
        clock.set(cst(2026, 10, 15, 10, 0))
        await eventually(lambda: sla_events(s, extended), lambda v: ("SlaBreached", "resolve") in v)
        for case in (holiday, paused, extended, moved):
            events = sla_events(s, case)
            assert len(events) == len(set(events)), events


async def test_worker_killed_and_restarted_misses_nothing_and_duplicates_nothing(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    s = topics.with_(timer_interval=0.05)
    cases = []
    async with faust_worker(s, runtime.clock):
        for _ in range(6):
            case = (await api.submit())["case_id"]
            await api.ok("dispatcher", case, "dispatch", department="bh-market")
            cases.append(case)
        clock.set(cst(2026, 7, 21, 11, 40))  # past every warning
        for case in cases:
            await eventually(lambda c=case: sla_events(s, c), lambda v: len(v) == 1)
    # The worker is gone; deadlines pass while nobody watches.
    clock.set(cst(2026, 7, 21, 12, 5))
    async with faust_worker(s, clock):
        for case in cases:
            got = await eventually(lambda c=case: sla_events(s, c), lambda v: len(v) == 2)
            assert got == [("SlaWarning", "accept"), ("SlaBreached", "accept")]
        await api.ok("bh-market", cases[0], "accept")
        await caught_up(s, cases[0])
    for case in cases:
        assert len(sla_events(s, case)) == 2
    assert query(s, "SELECT count(*) FROM sla_timers WHERE case_id = %s AND clock = 'accept'", cases[0])[0][0] == 0


async def test_a_policy_change_moves_open_clocks_only_and_is_recorded_once(
        topics: Settings, clock: ManualClock, tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1.toml", tmp_path / "v2.toml"
    v1.write_text('version = "2026-a"\n[default]\naccept = "2h"\nresolve = "5d"\nfollow_up = "2d"\n', "utf-8")
    v2.write_text('version = "2026-b"\n[default]\naccept = "2h"\nresolve = "3d"\nfollow_up = "2d"\n', "utf-8")
    s1, s2 = topics.with_(sla_policy=str(v1)), topics.with_(sla_policy=str(v2))
    rt = await Runtime(s1, clock=clock).open()
    try:
        async def run(case: str | None, type_name: str, role: Role, **body: object) -> str:
            actor = Actor("tj-binhai", role, "bh-market" if role is Role.DEPARTMENT else None)
            r = await rt.service.execute(CommandRequest(type_name, str(uuid.uuid4()), actor,
                                                        submit_body() if type_name == "submit" else body,
                                                        case_id=case))
            return r.case_id

        async with faust_worker(s1, clock):
            working, paused, closed = [await run(None, "submit", Role.INTAKE) for _ in range(3)]
            for case in (working, paused, closed):
                await run(case, "dispatch", Role.DISPATCHER, department="bh-market")
                await run(case, "accept", Role.DEPARTMENT)
            await run(paused, "request_materials", Role.DEPARTMENT, items=["图纸"], note="")
            await run(closed, "reply", Role.DEPARTMENT, content="已办")
            await run(closed, "close", Role.DISPATCHER, outcome="resolved", note="")
            for case in (working, paused, closed):
                await caught_up(s1, case)
        clock.set(cst(2026, 7, 22, 10, 0))  # the change lands a day later
        for _ in range(2):  # a second start with the same policy changes nothing
            async with faust_worker(s2, clock):
                got = await eventually(
                    lambda: query(s2, "SELECT rolled_out_at FROM sla_policy_versions WHERE version = '2026-b'"),
                    lambda v: bool(v) and v[0][0] is not None)
                assert got
                for case in (working, paused):
                    await caught_up(s2, case)
        applied = query(s2, "SELECT case_id, count(*) FROM events WHERE event_type = 'SlaPolicyApplied' GROUP BY 1")
        assert sorted(applied) == sorted([(working, 1), (paused, 1)])
        # Dispatched Tue 21 Jul 10:00: 5 working days (Tue 28th) become 3 (Fri 24th); the time spent counts.
        for case in (working, paused):
            assert query(s2, "SELECT resolve_due FROM case_view WHERE case_id = %s", case)[0][0] == cst(2026, 7, 24, 10, 0)
        assert query(s2, "SELECT resolve_due FROM case_view WHERE case_id = %s", closed)[0][0] == cst(2026, 7, 28, 10, 0)
        case = await rt.service.load(working)
        assert case.policy_version == "2026-b"
    finally:
        await rt.close()


async def test_a_policy_roll_out_the_calendar_refuses_is_retried_not_marked_done(
        topics: Settings, clock: ManualClock, tmp_path: Path) -> None:
    # v2 triples the resolve goal, which moves a December 2031 deadline into 2032, past the shipped
    # calendar's provisional horizon; v2's file forgot the 2027 override that extends it by a year.
    # The case must not silently keep v1's goals with the roll-out marked done.
    (tmp_path / "cal-2027.toml").write_text('holidays = ["2027-01-01"]\n', "utf-8")
    goals = '[default]\naccept = "2h"\nresolve = "{}"\nfollow_up = "2d"\n'
    v1, v2 = tmp_path / "v1.toml", tmp_path / "v2.toml"
    v1.write_text('version = "a"\n' + goals.format("5d"), "utf-8")
    v2.write_text('version = "b"\n' + goals.format("15d"), "utf-8")
    s1, s2 = topics.with_(sla_policy=str(v1)), topics.with_(sla_policy=str(v2))
    clock.set(cst(2031, 12, 15, 10, 0))  # Monday: five working days end on the 22nd, fifteen in 2032
    rt1 = await Runtime(s1, clock=clock).open()
    try:
        await roll_out_policy(rt1.pool, rt1.service, rt1.policy, rt1.policy_document or "", clock, "tj-binhai")
        case = (await rt1.service.execute(CommandRequest("submit", str(uuid.uuid4()), Actor("tj-binhai", Role.INTAKE),
                                                         submit_body()))).case_id
        await rt1.service.execute(CommandRequest("dispatch", str(uuid.uuid4()), Actor("tj-binhai", Role.DISPATCHER),
                                                 {"department": "bh-market"}, case_id=case))
        codec = Codec()
        stored = query(s1, "SELECT data FROM events WHERE case_id = %s ORDER BY seq", case)
        assert s1.database_url
        async with await psycopg.AsyncConnection.connect(s1.database_url, autocommit=True) as conn:
            await Projector(codec, lambda: rt1.policy, clock.now).apply(
                conn, [Incoming(s1.events_topic, 0, i, codec.decode_event(bytes(r[0]))) for i, r in enumerate(stored)])
    finally:
        await rt1.close()

    async def roll_out(settings: Settings) -> int:
        rt = await Runtime(settings, clock=clock).open()
        try:
            return await roll_out_policy(rt.pool, rt.service, rt.policy, rt.policy_document or "", clock, "tj-binhai")
        finally:
            await rt.close()

    with pytest.raises(CalendarError, match="2032"):
        await roll_out(s2)
    assert query(s2, "SELECT rolled_out_at FROM sla_policy_versions WHERE version = 'b'") == [(None,)]
    assert query(s2, "SELECT count(*) FROM events WHERE case_id = %s", case) == [(2,)]
    v2.write_text('version = "b"\n[calendar]\noverride_file = "cal-2027.toml"\n' + goals.format("15d"), "utf-8")
    assert await roll_out(s2) == 1  # fixed and restarted: the case gets v2's goals after all
    assert query(s2, "SELECT event_type FROM events WHERE case_id = %s ORDER BY seq", case)[-1] == ("SlaPolicyApplied",)
    assert query(s2, "SELECT rolled_out_at IS NOT NULL FROM sla_policy_versions WHERE version = 'b'") == [(True,)]


async def test_a_timer_of_a_case_the_store_has_closed_is_dropped_not_retried(
        settings: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    """The read model trails the store (an import, a backlog): a timer fires on a case that is
    already closed. Its clock ended with the case, so the row goes, quietly, at once."""
    case = (await api.submit())["case_id"]
    await api.ok("dispatcher", case, "dispatch", department="bh-market")
    await api.ok("dispatcher", case, "close", outcome="duplicate", note="重复件")
    due = clock.now()
    query(settings, "INSERT INTO sla_timers (case_id, clock, kind, fire_at, due_at, partition) "
                    "VALUES (%s, 'accept', 'breach', %s, %s, 0)", case, due, due)
    timers = SlaTimers(runtime.pool, runtime.service, clock, settings.system_id)
    with capture_logs() as logs:
        assert await timers.fire_due([0]) == 1
    assert query(settings, "SELECT * FROM sla_timers WHERE case_id = %s", case) == []
    assert [entry for entry in logs if entry["log_level"] != "info"] == [], "no warning: nothing is wrong"
    assert sla_events(settings, case) == []
