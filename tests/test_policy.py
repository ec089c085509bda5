"""The SLA policy file: goals, the calendar override for years chinesecalendar does not know, loud errors."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from suqiu.base.policy import PolicyError, load_policy
from suqiu.cli.main import run_policy_check
from suqiu.domain.sla import CHINA, CalendarError


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHINA)


def test_shipped_default_has_domain_goals() -> None:
    p = load_policy()
    normal, urgent, land = p.goal("approval", "normal"), p.goal("approval", "urgent"), p.goal("land_planning", "normal")
    assert (normal.accept_minutes, normal.resolve_minutes, normal.follow_up_minutes) == (120, 5 * 420, 2 * 420)
    assert (urgent.accept_minutes, urgent.resolve_minutes) == (30, 420)
    assert land.resolve_minutes == 15 * 420 and p.goal("land_planning", "urgent").resolve_minutes == 420
    assert p.warning_share == 0.8 and p.version == "default-1"


def test_2027_works_through_the_override_file_and_a_year_past_the_horizon_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "cal-2027.toml").write_text(
        '# Illustrative days, as an administrator would copy them from the State Council notice.\n'
        'holidays = ["2027-01-01", "2027-02-08"]\nworkdays = ["2027-02-06"]\n', "utf-8")
    (tmp_path / "policy.toml").write_text(
        '[calendar]\noverride_file = "cal-2027.toml"\n[default]\naccept = "2h"\nresolve = "2d"\nfollow_up = "1d"\n'
        '[[goal]]\npriority = "urgent"\naccept = "30m"\nresolve = "4h"\nwall_clock = true\n', "utf-8")
    p = load_policy(tmp_path / "policy.toml")
    cal = p.calendar
    assert not cal.is_workday(date(2027, 1, 1)) and cal.is_workday(date(2027, 2, 6))  # a make-up Saturday
    assert cal.is_workday(date(2027, 1, 4)) and not cal.is_workday(date(2027, 1, 9))
    # Fri 5 Feb 2027 16:00 + 2 working days: 1.5 h Fri, 7 h on Sat 6 (调休), 5.5 h Tue 9 (Mon 8 off).
    goal = p.goal("approval", "normal")
    assert p.after(goal, at(2027, 2, 5, 16, 0), goal.resolve_minutes) == at(2027, 2, 9, 16, 0)
    urgent = p.goal("approval", "urgent")
    assert p.after(urgent, at(2027, 2, 5, 22, 0), urgent.resolve_minutes) == at(2027, 2, 6, 2, 0)  # wall clock
    # 2028 has no notice: provisional, five years past the last official one at most.
    assert p.calendar.is_workday.provisional_from == date(2028, 1, 1)
    assert p.after(goal, at(2028, 3, 1, 10, 0), 60) == at(2028, 3, 1, 11, 0)
    with pytest.raises(CalendarError, match="2033"):
        p.after(goal, at(2033, 3, 1, 10, 0), 60)
    with pytest.raises(CalendarError, match="2032"):
        load_policy().after(load_policy().default, at(2032, 3, 1, 10, 0), 60)


def test_before_is_the_inverse_of_after() -> None:
    p = load_policy()
    goal = p.default
    start = at(2026, 9, 30, 10, 0)
    for minutes in (1, 90, 420, 2100):
        end = p.after(goal, start, minutes)
        assert p.before(goal, end, minutes) == start
    assert p.calendar.sub(at(2026, 10, 8, 9, 30), 3600) == at(2026, 9, 30, 17, 0)  # back over the holiday


@pytest.mark.parametrize(("text", "message"), [
    ("[default]\naccept = '2h'\n", "default.resolve is required"),
    ("[default]\naccept = 'soon'\nresolve = '1d'\nfollow_up = '1d'\n", "default.accept: 'soon'"),
    ("[default]\naccept = '2h'\nresolve = '1d'\nfollow_up = '1d'\n[[goal]]\ncategory = 7\n", "goal[0].category"),
    ("warning_share = 1.5\n[default]\naccept = '2h'\nresolve = '1d'\nfollow_up = '1d'\n", "warning_share"),
    ("[calendar]\nholidays = ['2027-13-01']\n[default]\naccept = '2h'\nresolve = '1d'\nfollow_up = '1d'\n", "holidays"),
    ("[calendar]\nperiods = [['09:00', '12:30'], ['12:00', '17:00']]\n[default]\naccept = '2h'\nresolve = '1d'\n"
     "follow_up = '1d'\n", "calendar.periods must not overlap"),
    ("not toml [", "not valid TOML"),
])
def test_a_bad_policy_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_policy(path)
    with pytest.raises(PolicyError, match=r"missing\.toml: cannot be read: No such file"):
        load_policy(tmp_path / "missing.toml")


def test_supervision_delay_counts_working_time() -> None:
    p = load_policy()
    assert p.after(p.default, at(2026, 7, 21, 12, 0), p.supervision_after_minutes) == at(2026, 7, 21, 17, 30)
    assert p.after(p.default, at(2026, 7, 21, 12, 0), 0) - at(2026, 7, 21, 12, 0) == timedelta(0)


def test_policy_check_names_what_the_calendar_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_policy_check(None, today=date(2026, 7, 1)) == 0
    out = capsys.readouterr().out
    assert "version 'default-1'" in out and "resolve 5 working days" in out and "land_planning" in out
    assert "working days official through 2026-12-31, provisional through 2031-12-31" in out
    assert run_policy_check(None, today=date(2026, 12, 1)) == 1  # deadlines reach 2027 within weeks
    out = capsys.readouterr().out
    assert "no State Council notice for 2027" in out and "provisional" in out and "refused" not in out
    (tmp_path / "cal-2027.toml").write_text('holidays = ["2027-01-01", "2027-02-08"]\nworkdays = ["2027-02-06"]\n')
    (tmp_path / "policy.toml").write_text(
        '[calendar]\noverride_file = "cal-2027.toml"\n[default]\naccept = "2h"\nresolve = "2d"\nfollow_up = "1d"\n')
    assert run_policy_check(str(tmp_path / "policy.toml"), today=date(2026, 12, 1)) == 0
    out = capsys.readouterr().out
    assert "override 2027: 2 holidays, 1 make-up working days" in out and "official through 2027-12-31" in out
    (tmp_path / "bad.toml").write_text('[default]\naccept = "soon"\n')
    assert run_policy_check(str(tmp_path / "bad.toml")) == 2
    assert "default.accept" in capsys.readouterr().err
