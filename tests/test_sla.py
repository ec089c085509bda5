"""SLA timers in a real Faust worker on the real broker and PostgreSQL, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from suqiu.clock import ManualClock
from suqiu.config import Settings
from suqiu.runtime import Runtime
from tests.conftest import Api
from tests.kafka_helpers import faust_worker
from tests.sla_helpers import caught_up, eventually, query, sla_events

CST = timedelta(hours=8)


def cst(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC) - CST


async def test_accept_clock_warns_breaches_and_supervises_once_each(
        topics: Settings, runtime: Runtime, api: Api, clock: ManualClock) -> None:
    s = topics.with_(timer_interval=0.05)
    async with faust_worker(s, runtime):
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
        assert body["sla_status"] == "overdue" and body["supervised"] is True
        assert sla_events(s, case) == [("SlaWarning", "accept"), ("SlaBreached", "accept"),
                                       ("SupervisionOpened", "accept")]
