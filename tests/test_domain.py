"""The pure core: USCC, command parsing, rules, and properties over random command sequences."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suqiu.base.calendar import ChinaWorkdays
from suqiu.domain import Case, DomainError, decide, evolve, replay_state
from suqiu.domain.clocks import CLOCK_STATES, Clock
from suqiu.domain.commands import parse_command
from suqiu.domain.model import CLOCKS, Actor, Role, Status
from suqiu.domain.refdata import Jurisdiction, ancestors, subtree
from suqiu.domain.sla import CHINA, CalendarError
from suqiu.domain.uscc import complete_uscc, uscc_problem
from tests.support.domain import CTX, POLICY, SUBMIT, T0, meta, run, steps


def test_uscc_checksums() -> None:
    assert uscc_problem("91110000600037341L") is None
    assert uscc_problem("91110000600037341M") == "checksum (18th character) does not match"
    assert uscc_problem("9111000060003734") == "must be 18 characters"
    assert "outside GB 32100" in (uscc_problem("91110000600037341I") or "")
    made = complete_uscc("91120116MA05JQ2X")
    assert uscc_problem(made) is None and len(made) == 18


def test_parse_names_the_field() -> None:
    with pytest.raises(DomainError) as err:
        parse_command("submit", {**SUBMIT, "enterprise": {"name": "x"}})
    assert err.value.details["field"] == "enterprise.uscc"
    with pytest.raises(DomainError) as err:
        parse_command("request_extension", {"reason": "r", "working_days": "3"})
    assert err.value.details["field"] == "working_days"
    with pytest.raises(DomainError) as err:
        parse_command("request_extension", {"reason": "r"})
    assert err.value.details["field"] == "working_days"
    cmd = parse_command("request_materials", {"items": ["a"]})
    assert cmd.note == ""  # type: ignore[attr-defined]


def test_business_calendar_across_national_day_and_its_makeup_saturday() -> None:
    cal = POLICY.calendar
    # 2026-09-30 (Wed) 16:30: 1 working hour left that day; 10-01..10-07 are holidays;
    # Saturday 10-10 is a make-up working day (调休), Sunday 10-11 is not.
    start = datetime(2026, 9, 30, 16, 30, tzinfo=CHINA)
    assert cal.add(start, 3600) == datetime(2026, 9, 30, 17, 30, tzinfo=CHINA)
    assert cal.add(start, 2 * 3600) == datetime(2026, 10, 8, 10, 0, tzinfo=CHINA)
    day = cal.day_seconds
    # 1 h on 9-30, then 10-08 and 10-09 (2 days), then the make-up Saturday 10-10.
    assert cal.add(start, 3600 + 2 * day + 3600) == datetime(2026, 10, 10, 10, 0, tzinfo=CHINA)
    assert cal.between(start, datetime(2026, 10, 10, 10, 0, tzinfo=CHINA)) == 3600 + 2 * day + 3600
    assert cal.add(datetime(2026, 7, 21, 12, 30, tzinfo=CHINA), 0) == datetime(2026, 7, 21, 13, 30, tzinfo=CHINA)


@settings(max_examples=300, deadline=None)
@given(start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 8, 31)),
       seconds=st.floats(min_value=0, max_value=60 * 8 * 3600, allow_nan=False))
def test_adding_and_subtracting_working_time_agree_with_counting_it(start: datetime, seconds: float) -> None:
    # add and sub skip whole working days; between counts day by day: each checks the other.
    cal, at = POLICY.calendar, start.replace(tzinfo=CHINA)
    assert abs(cal.between(at, cal.add(at, seconds)) - seconds) < 1e-3
    assert abs(cal.between(cal.sub(at, seconds), at) - seconds) < 1e-3
    assert cal.add(at, seconds) >= at >= cal.sub(at, seconds)


def test_a_year_without_notice_is_provisional_and_one_past_the_horizon_a_loud_error() -> None:
    provisional = ChinaWorkdays()
    assert provisional.provisional_from == date(2027, 1, 1)
    # Weekends and the statutory holidays only: 春节 is the eve and 初一 to 初三 (5-8 Feb 2027),
    # and no make-up Saturday, which only a notice can give.
    assert [provisional(date(2027, 2, d)) for d in range(4, 11)] == [True, False, False, False, False, True, True]
    assert provisional(date(2027, 1, 1)) is False and provisional(date(2027, 10, 4)) is True
    with pytest.raises(CalendarError, match="2032"):
        provisional(date(2032, 3, 1))
    with pytest.raises(CalendarError, match="2003"):
        provisional(date(2003, 3, 3))
    known = ChinaWorkdays({date(2027, 1, 1): False, date(2027, 2, 7): True})
    assert known(date(2027, 1, 1)) is False and known(date(2027, 2, 7)) is True
    assert known(date(2027, 3, 1)) is True and known(date(2027, 3, 6)) is False


def test_transfer_restarts_accept_clock_only_and_pause_credits_time() -> None:
    disp, market = Actor("s", Role.DISPATCHER), Actor("s", Role.DEPARTMENT, "bh-market")
    planning = Actor("s", Role.DEPARTMENT, "bh-planning")
    case = Case(case_id="case-1")
    steps: list[tuple[str, dict[str, Any], Actor, datetime]] = [
        ("submit", SUBMIT, Actor("s", Role.INTAKE), T0),
        ("dispatch", {"department": "bh-market"}, disp, T0),
        ("transfer", {"department": "bh-planning", "reason": "r"}, disp, T0 + timedelta(hours=1)),
    ]
    for n, (t, body, actor, at) in enumerate(steps):
        for ev in decide(case, parse_command(t, body), meta(n, actor, at), CTX):
            case = evolve(case, ev)
    assert case.resolve_due == datetime(2026, 7, 28, 10, 0, tzinfo=CHINA)  # unchanged by the transfer
    # Transferred at 11:00: one working hour before lunch, one after 13:30.
    assert case.accept_due == datetime(2026, 7, 21, 14, 30, tzinfo=CHINA)
    for n, (t, body, actor, at) in enumerate([
        ("accept", {}, planning, T0 + timedelta(hours=1)),
        ("request_materials", {"items": ["图纸"]}, planning, datetime(2026, 7, 22, 9, 0, tzinfo=CHINA)),
        ("supply_materials", {}, Actor("s", Role.ENTERPRISE), datetime(2026, 7, 23, 9, 0, tzinfo=CHINA)),
    ], start=10):
        for ev in decide(case, parse_command(t, body), meta(n, actor, at), CTX):
            case = evolve(case, ev)
    assert case.resolve_due == datetime(2026, 7, 29, 10, 0, tzinfo=CHINA)  # one working day credited
    with pytest.raises(DomainError) as err:
        decide(case, parse_command("accept", {}), meta(20, market), CTX)
    assert err.value.code in ("forbidden", "invalid_state")


@settings(max_examples=300, deadline=None)
@given(steps)
def test_random_sequences_keep_seq_gapless_and_closed_cases_unreplied(sequence: list[Any]) -> None:
    case, log, accepted = run(sequence)
    assert [ev.seq for ev in log] == list(range(1, len(log) + 1))
    assert case.seq == len(log)
    assert all(not (before in (Status.CLOSED, Status.WITHDRAWN) and t == "reply") for before, t in accepted)
    assert all(before is not Status.WITHDRAWN for before, _ in accepted)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_evolving_the_same_events_gives_the_same_state(sequence: list[Any]) -> None:
    case, log, _ = run(sequence)
    assert replay_state("case-1", log) == case
    assert replay_state("case-1", list(log)) == replay_state("case-1", log)


def test_jurisdiction_tree_walks() -> None:
    tree = {j.code: j for j in (
        Jurisdiction("tj", "天津市", "city", None), Jurisdiction("bh", "滨海新区", "district", "tj"),
        Jurisdiction("teda", "开发区", "zone", "bh"), Jurisdiction("hp", "和平区", "district", "tj"),
        Jurisdiction("a", "A", "street", "b"), Jurisdiction("b", "B", "street", "a"),  # a cycle in bad data
    )}
    assert subtree(tree, "bh") == {"bh", "teda"}
    assert subtree(tree, "tj") == {"tj", "bh", "teda", "hp"}
    assert ancestors(tree, "teda") == ["teda", "bh", "tj"]
    assert ancestors(tree, "a") == ["a", "b"]


def test_the_clocks_are_one_vocabulary_with_their_states() -> None:
    assert {c.value for c in Clock} == CLOCKS
    assert Clock.RESOLVE.runs_in < Clock.RESOLVE.moves_in  # paused (挂起), it still moves with a policy change
    assert {Status.DISPATCHED, Status.ACCEPTED, Status.RETURNED, Status.SUSPENDED, Status.REPLIED} == CLOCK_STATES
    assert Clock.FOLLOW_UP.due(Case(case_id="c", follow_up_due=T0)) == T0
