"""Chinese working days: official (chinesecalendar, or the operator's notice) or provisional.

A year is *official* when chinesecalendar knows it or the policy's override lists its State
Council notice. A later year, up to HORIZON_YEARS past the last official one, is *provisional*:
weekends off plus the statutory holidays of 全国年节及纪念日放假办法 (2024 revision), with the
lunar dates from the `holidays` package and no make-up working days (调休), which no rule
predicts. Anything else (before 2004, or further ahead) is a date typed wrong: CalendarError.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Mapping
from datetime import date, timedelta
from functools import cache
from typing import Any

import chinese_calendar
import holidays

from suqiu.domain.sla import CalendarError, Workdays

FIRST_YEAR = 2004  # chinesecalendar's first year
HORIZON_YEARS = 5
# Deadlines run weeks ahead (15 working days is the longest shipped goal): say so well before.
WARN_AHEAD = timedelta(days=60)


@cache
def library_knows(year: int) -> bool:
    """Whether chinesecalendar ships `year`'s notice."""
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


@cache
def statutory_holidays(year: int) -> frozenset[date]:
    """The statutory days off of `year` by rule (元旦, 春节 eve to 初三, 清明, 劳动节 2, 端午, 中秋, 国庆 3).

    `holidays` with observed=False gives exactly these for a year with no notice; the days it
    lists as substituted come from a notice, which a provisional calendar must not guess.
    """
    days = holidays.country_holidays("CN", years=year, observed=False, language="en_US")
    return frozenset(d for d, name in days.items() if not name.startswith("Day off"))


def library_label() -> str:
    return f"chinesecalendar {importlib.metadata.version('chinesecalendar')}"


class ChinaWorkdays:
    """A workday predicate; an override wins, then chinesecalendar, then the provisional rule.

    `provisional_from` makes every day from that date on provisional, whatever is known: the
    calendar as it stood when a deadline was placed, for re-planning it once the notice came.
    A class rather than a closure so a policy can be handed to a projector process.
    """

    def __init__(self, overrides: Mapping[date, bool] | None = None, sources: Mapping[int, str] | None = None,
                 provisional_from: date | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.sources = dict(sources or {})
        self._override_years = frozenset(d.year for d in self.overrides)
        year = FIRST_YEAR
        while year in self._override_years or library_knows(year):
            year += 1
        first = date(year, 1, 1)
        self.provisional_from = first if provisional_from is None else min(first, provisional_from)
        self.horizon = year - 1 + HORIZON_YEARS
        # Deadlines walk day by day; the answer for a date never changes within a process.
        self._cache: dict[date, bool] = {}

    def __reduce__(self) -> tuple[type[ChinaWorkdays], tuple[Any, ...]]:
        return ChinaWorkdays, (self.overrides, self.sources, self.provisional_from)

    def _key(self) -> tuple[Any, ...]:
        return frozenset(self.overrides.items()), self.provisional_from

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChinaWorkdays) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __call__(self, day: date) -> bool:
        known = self._cache.get(day)
        if known is None:
            known = self._cache[day] = self._lookup(day)
        return known

    @property
    def official_through(self) -> date:
        return self.provisional_from - timedelta(days=1)

    @property
    def provisional_through(self) -> date:
        return date(self.horizon, 12, 31)

    def as_placed(self, provisional_from: date) -> ChinaWorkdays:
        """This calendar with every day from `provisional_from` on provisional."""
        return ChinaWorkdays(self.overrides, self.sources, provisional_from)

    def label(self) -> str:
        """Where the official days come from, for the events that cite this calendar."""
        parts = [library_label()]
        for year in sorted(self._override_years):
            days = sorted((d.isoformat(), v) for d, v in self.overrides.items() if d.year == year)
            digest = hashlib.sha256(repr(days).encode()).hexdigest()[:12]
            parts.append(f"{year}: {self.sources.get(year, 'policy [calendar]')} (sha256 {digest})")
        return "; ".join(parts)

    def _lookup(self, day: date) -> bool:
        if not FIRST_YEAR <= day.year <= self.horizon:
            raise CalendarError(
                f"no working-day calendar for {day.year}: official days end {self.official_through.isoformat()} "
                f"and provisional ones {self.provisional_through.isoformat()}; a date this far out is a typing "
                "error, or the State Council notices are missing from the calendar override file "
                "(SUQIU_SLA_POLICY [calendar] section)",
                year=day.year, date=day.isoformat(),
            )
        if day >= self.provisional_from:
            return day.weekday() < 5 and day not in statutory_holidays(day.year)
        if day in self.overrides:
            return self.overrides[day]
        if library_knows(day.year):
            return bool(chinese_calendar.is_workday(day))
        # The override file covers this year: its listed days are the exceptions.
        return day.weekday() < 5


def coverage(workdays: Workdays, today: date) -> dict[str, Any]:
    """How far the calendar is official and provisional, and what to do when official days run out.

    Deadlines past `official_through` are placed on the provisional calendar and re-planned once
    the State Council notice is in the override file; a year past `provisional_through` is refused.
    """
    through = workdays.official_through
    out: dict[str, Any] = {"status": "ok", "official_through": through.isoformat(),
                           "provisional_through": workdays.provisional_through.isoformat()}
    if through - today < WARN_AHEAD:
        year = through.year + 1
        out["status"] = (f"no State Council notice for {year}: deadlines after {through.isoformat()} are provisional "
                         f"(weekends and statutory holidays, no make-up days) until the notice for {year} is in "
                         "the calendar override file (SUQIU_SLA_POLICY); they are re-planned then")
    return out


def coverage_text(cover: dict[str, Any]) -> str:
    """One line of what `coverage` found, for people."""
    if cover["status"] != "ok":
        return str(cover["status"])
    return f"working days official through {cover['official_through']}, provisional through " \
           f"{cover['provisional_through']}"
