"""Past the last State Council notice: provisional deadlines, re-planned once when the notice is added."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
from holidays.countries.china import ChinaStaticHolidays

from suqiu.base.calendar import FIRST_YEAR, library_knows
from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.base.policy import policy_document
from suqiu.domain.model import Actor, Role
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime
from tests.conftest import SYSTEM, submission
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, cst, eventually, query, replay, snapshot

# Where the two libraries disagree about a year chinesecalendar knows, each day with the reason.
# A day that appears or disappears here fails the test by name: one library's data changed.
KNOWN_DISAGREEMENTS = {
    # The 2006 notice moved the weekend of 31 Dec 2005 / 1 Jan 2006 to 2-3 Jan: `holidays` lists
    # 31 Dec 2005 as a make-up working day, chinesecalendar as a day off. Deadlines use chinesecalendar.
    date(2005, 12, 31): "make-up working day in holidays only",
}


def _days(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]


def test_holidays_and_chinesecalendar_agree_on_every_official_year() -> None:
    years = [y for y in range(FIRST_YEAR, date.today().year + 2) if library_knows(y)]
    assert years[0] == 2004 and years[-1] >= 2026
    import holidays

    makeup_h: set[date] = set()
    off_h: set[date] = set()
    for year in years:
        off_h |= {d for d in holidays.country_holidays("CN", years=year) if d.weekday() < 5}
        entries = ChinaStaticHolidays.special_public_holidays.get(year, ())
        for entry in (entries,) if isinstance(entries[0] if entries else None, int) else entries:
            if len(entry) >= 4 and all(isinstance(x, int) for x in entry[:4]):  # (day off, substituted from)
                makeup_h.add(date(entry[4] if len(entry) == 5 else year, entry[2], entry[3]))
    days = [d for y in years for d in _days(y)]
    off_c = {d for d in days if d.weekday() < 5 and not chinese_calendar.is_workday(d)}
    makeup_c = {d for d in days if d.weekday() >= 5 and chinese_calendar.is_workday(d)}
    differ = {d: "day off in holidays only" for d in off_h - off_c} | {
        d: "day off in chinesecalendar only" for d in off_c - off_h} | {
        d: "make-up working day in holidays only" for d in makeup_h - makeup_c if d.year >= FIRST_YEAR} | {
        d: "make-up working day in chinesecalendar only" for d in makeup_c - makeup_h}
    assert differ == KNOWN_DISAGREEMENTS, {d.isoformat(): why for d, why in sorted(differ.items())
                                           if KNOWN_DISAGREEMENTS.get(d) != why}


def with_2027_notice(settings: Settings, directory: Path) -> Settings:
    """The shipped policy plus a 2027 notice in an override file, the policy version unchanged: a
    9-day Spring Festival (Fri 5 to Sat 13 Feb) and make-up Saturdays on 30 Jan and 20 Feb."""
    spring = [(date(2027, 2, 5) + timedelta(days=i)).isoformat() for i in range(9)]
    (directory / "cal-2027.toml").write_text(
        f"holidays = {json.dumps(['2027-01-01', *spring])}\nworkdays = [\"2027-01-30\", \"2027-02-20\"]\n", "utf-8")
    (directory / "policy.toml").write_text(policy_document().replace(
        '# override_file = "calendar-2027.toml"', 'override_file = "cal-2027.toml"'), "utf-8")
    return settings.with_(sla_policy=str(directory / "policy.toml"))


async def _dispatched(rt: Runtime, category: str, *, accept: bool) -> str:
    body = submission(category=category)
    body.pop("command_id")
    svc = rt.service
    case = (await svc.execute(CommandRequest("submit", str(uuid.uuid4()), Actor(SYSTEM, Role.INTAKE), body))).case_id
    await svc.execute(CommandRequest("dispatch", str(uuid.uuid4()), Actor(SYSTEM, Role.DISPATCHER),
                                     {"department": "bh-market"}, case_id=case))
    if accept:
        await svc.execute(CommandRequest("accept", str(uuid.uuid4()), Actor(SYSTEM, Role.DEPARTMENT, "bh-market"),
                                         {}, case_id=case))
    return case


def _revisions(s: Settings) -> dict[str, int]:
    return dict(query(s, "SELECT case_id, count(*) FROM events WHERE event_type = 'SlaCalendarRevised' GROUP BY 1"))


async def test_the_notice_re_plans_each_provisional_deadline_once_with_two_workers(
        topics: Settings, clock: ManualClock, tmp_path: Path) -> None:
    s = topics.with_(timer_interval=0.05)
    notice = with_2027_notice(s, tmp_path)
    rt = await Runtime(s, clock=clock).open()  # the shipped calendar: no 2027 notice
    try:
        clock.set(cst(2026, 12, 20, 10, 0))
        # 15 working days: 9 in December, 1 Jan off, 4-8 Jan, Mon 11 Jan the 15th (to 17:30).
        early = await _dispatched(rt, "land_planning", accept=False)
        clock.set(cst(2027, 1, 25, 10, 0))  # Monday, still without the notice
        # 15 working days after Mon 25 Jan 10:00: 26-29 Jan, 1-4 Feb, 9-12 Feb, 15-17 Feb: Wed 17 Feb 10:00.
        long = await _dispatched(rt, "land_planning", accept=True)
        # 5 working days: 26-29 Jan and Mon 1 Feb 10:00.
        short = await _dispatched(rt, "approval", accept=True)
    finally:
        await rt.close()
    clock.set(cst(2027, 1, 31, 10, 0))  # the notice is late: added on Sunday 31 Jan, workers restarted
    async with faust_worker(notice, clock), faust_worker(notice, clock):
        got = await eventually(lambda: _revisions(s), lambda v: len(v) == 3, timeout=60)
        assert set(got) == {early, long, short}, got
        for case in (early, long, short):
            await caught_up(s, case)
        await eventually(lambda: query(s, "SELECT count(*) FROM case_view WHERE provisional_from IS NOT NULL"),
                         lambda v: v == [(0,)])
    assert _revisions(s) == {early: 1, long: 1, short: 1}  # once each, two workers sweeping
    due = dict(query(s, "SELECT case_id, resolve_due FROM case_view"))
    # By hand on the notice: 26-29 Jan (4), Sat 30 Jan (5), 1-4 Feb (9), 5-13 Feb off, 15-19 Feb (14),
    # Sat 20 Feb (15): 10:00 on Saturday 20 Feb. The short case: Sat 30 Jan 10:00, already past.
    assert due == {early: cst(2027, 1, 11, 17, 30), long: cst(2027, 2, 20, 10, 0), short: cst(2027, 1, 30, 10, 0)}
    breaches = query(s, "SELECT case_id FROM events WHERE event_type = 'SlaBreached' AND case_id <> %s", early)
    assert breaches == [(short,)]  # moved into the past: at once; the long case is still on time
    code, out = await replay(notice, "case", short, "--format", "json")
    assert code == 0, out
    entries = [json.loads(line) for line in out.splitlines()]
    kinds = [x["event"] for x in entries]
    assert kinds[kinds.index("SlaCalendarRevised") + 1] == "SlaBreached", kinds  # one command, both events
    revised, breached = entries[kinds.index("SlaCalendarRevised")], entries[kinds.index("SlaBreached")]
    assert revised["details"]["calendar"].startswith("chinesecalendar") and "cal-2027.toml" in revised["details"]["calendar"]
    assert revised["deadlines"]["resolve_due"] == "2027-01-30T02:00:00.000Z"
    assert "日历修订" in breached["details"]["cause"] and breached["time_utc"] == "2027-01-31T02:00:00.000Z"
    # The timers follow the re-planned deadline.
    assert query(s, "SELECT fire_at FROM sla_timers WHERE case_id = %s AND kind = 'breach'", long) == \
        [(cst(2027, 2, 20, 10, 0),)]
    # As of before the revision, the deadline was provisional; after it, official.
    for seq, resolve_due, flagged in ((3, "2027-02-17T02:00:00.000Z", ["resolve", "accept"]),
                                      (4, "2027-02-20T02:00:00.000Z", [])):
        code, out = await replay(notice, "case", long, "--seq", str(seq), "--format", "json")
        view = json.loads(out)
        assert (view["resolve_due"], sorted(view["provisional_deadlines"])) == (resolve_due, sorted(flagged)), view
    # A rebuild folds the same history to the same read models.
    live = snapshot(notice)
    assert (await replay(notice, "rebuild"))[0] == 0
    assert snapshot(notice) == live
