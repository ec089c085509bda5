"""Chinese working days (statutory holidays and 调休) from chinesecalendar, plus overrides."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import date

import chinese_calendar

from suqiu.domain.sla import CalendarError


def china_workdays(overrides: Mapping[date, bool] | None = None) -> Callable[[date], bool]:
    """A workday predicate; an override wins, an unknown year is an error, never a guess."""
    extra = dict(overrides or {})
    known_years = {d.year for d in extra}

    # Deadlines walk day by day; the answer for a date never changes within a process.
    @functools.lru_cache(maxsize=8192)
    def is_workday(day: date) -> bool:
        if day in extra:
            return extra[day]
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year in known_years:
                # The override file covers this year: its listed days are the exceptions.
                return day.weekday() < 5
            raise CalendarError(
                f"no holiday data for {day.year}: add the State Council notice's days to the "
                "calendar override file (SUQIU_SLA_POLICY [calendar] section)"
            ) from None

    return is_workday
