"""Chinese working days (statutory holidays and 调休) from chinesecalendar, plus overrides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

import chinese_calendar

from suqiu.domain.sla import CalendarError


class ChinaWorkdays:
    """A workday predicate; an override wins, an unknown year is an error, never a guess.

    A class rather than a closure so a policy can be handed to a projector process.
    """

    def __init__(self, overrides: Mapping[date, bool] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self._known_years = {d.year for d in self.overrides}
        # Deadlines walk day by day; the answer for a date never changes within a process.
        self._cache: dict[date, bool] = {}

    def __reduce__(self) -> tuple[type[ChinaWorkdays], tuple[dict[date, bool]]]:
        return ChinaWorkdays, (self.overrides,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChinaWorkdays) and other.overrides == self.overrides

    def __hash__(self) -> int:
        return hash(frozenset(self.overrides.items()))

    def __call__(self, day: date) -> bool:
        known = self._cache.get(day)
        if known is None:
            known = self._cache[day] = self._lookup(day)
        return known

    def knows(self, year: int) -> bool:
        """Whether `year`'s holidays and make-up days are known (from the library or the overrides)."""
        if year in self._known_years:
            return True
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def _lookup(self, day: date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year in self._known_years:
                # The override file covers this year: its listed days are the exceptions.
                return day.weekday() < 5
            raise CalendarError(
                f"no holiday data for {day.year}: add the State Council notice's days to the "
                "calendar override file (SUQIU_SLA_POLICY [calendar] section)",
                year=day.year, date=day.isoformat(),
            ) from None


# Deadlines run weeks ahead (15 working days is the longest shipped goal): say so well before.
WARN_AHEAD = timedelta(days=60)


def coverage(is_workday: Callable[[date], bool], today: date) -> dict[str, Any]:
    """How far ahead the calendar can place deadlines, and what to do when that is soon.

    From mid-December every goal reaching into a year with no holiday data is refused (HTTP 503,
    calendar_unknown) until that year's State Council notice is in the override file.
    """
    if not isinstance(is_workday, ChinaWorkdays):
        return {"status": "ok", "known_through": None}  # a calendar injected by a test
    year = today.year
    while year < today.year + 10 and is_workday.knows(year):
        year += 1
    through = date(year - 1, 12, 31)
    if through - today >= WARN_AHEAD:
        return {"status": "ok", "known_through": through.isoformat()}
    return {"status": f"no holiday data for {year}: deadlines after {through.isoformat()} are refused until the "
                      f"State Council notice for {year} is in the calendar override file (SUQIU_SLA_POLICY)",
            "known_through": through.isoformat()}


def coverage_text(cover: dict[str, Any]) -> str:
    """One line of what `coverage` found, for people."""
    return f"working days known through {cover['known_through']}" if cover["status"] == "ok" else cover["status"]
