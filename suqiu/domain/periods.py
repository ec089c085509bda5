"""Reporting periods (统计周期): Asia/Shanghai days, `to` exclusive, split by month, quarter or year."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from suqiu.domain.errors import invalid
from suqiu.domain.sla import CHINA

# A period longer than this is almost certainly a typo (year 20260 for 2026).
MAX_DAYS = 366 * 50
MAX_DAILY = 366  # days in a daily series
# The years a period may name: the platforms began after 2000, and a later year is a typo.
FIRST_YEAR, LAST_YEAR = 2000, 2199
MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


class Grain(StrEnum):
    """How a period is split for a series: 日, 月度, 季度, 年度."""

    DAY = "day"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"

    def start(self, day: date) -> date:
        """The first day of the month, quarter or year `day` falls in."""
        if self is Grain.DAY:
            return day
        if self is Grain.MONTH:
            return day.replace(day=1)
        if self is Grain.QUARTER:
            return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
        return date(day.year, 1, 1)

    def following(self, start: date) -> date:
        """The first day of the next month, quarter or year after the one starting on `start`."""
        if self is Grain.DAY:
            return start + timedelta(days=1)
        months = {Grain.MONTH: 1, Grain.QUARTER: 3, Grain.YEAR: 12}[self]
        index = start.year * 12 + start.month - 1 + months
        return date(index // 12, index % 12 + 1, 1)

    def label(self, start: date) -> str:
        """2026-07, 2026-Q3, 2026."""
        if self is Grain.DAY:
            return start.isoformat()
        if self is Grain.MONTH:
            return f"{start.year:04d}-{start.month:02d}"
        if self is Grain.QUARTER:
            return f"{start.year:04d}-Q{(start.month - 1) // 3 + 1}"
        return f"{start.year:04d}"


@dataclass(frozen=True, slots=True)
class Period:
    """Days from `start` up to, not including, `end`; None on either side is unbounded."""

    start: date | None = None
    end: date | None = None

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> Period:
        """From query text (`from`, `to`: ISO dates); refusals name the parameter."""
        period = cls(_iso_date(start, "from"), _iso_date(end, "to"))
        if period.start is not None and period.end is not None:
            if period.end <= period.start:
                raise invalid("to", "must be after from (to is exclusive)", rule="from < to")
            if (period.end - period.start).days > MAX_DAYS:
                raise invalid("to", f"the period is longer than {MAX_DAYS} days", rule=f"to - from <= {MAX_DAYS} days")
        return period

    @classmethod
    def month(cls, text: str) -> Period:
        """`YYYY-MM` as the period of that month (月度), for a monthly report."""
        found = MONTH.fullmatch(text)
        if found is None or not 1 <= int(found[2]) <= 12:
            raise invalid("month", f"a month as YYYY-MM, such as 2026-11, not {text[:20]!r}", rule="YYYY-MM")
        start = _in_years(date(int(found[1]), int(found[2]), 1), "month")
        return cls(start, Grain.MONTH.following(start))

    @property
    def bounded(self) -> bool:
        return self.start is not None and self.end is not None

    def instants(self) -> tuple[datetime | None, datetime | None]:
        """The period as instants: midnight in Asia/Shanghai at each end."""
        return (None if self.start is None else midnight(self.start), None if self.end is None else midnight(self.end))

    def split(self, grain: Grain) -> list[tuple[str, Period]]:
        """The months (quarters, years) of a bounded period, the first and last cut to it."""
        assert self.start is not None and self.end is not None, "split needs a bounded period"
        out: list[tuple[str, Period]] = []
        start = grain.start(self.start)
        while start < self.end:
            following = grain.following(start)
            out.append((grain.label(start), Period(max(start, self.start), min(following, self.end))))
            start = following
        return out

    @property
    def days(self) -> int:
        """How many days a bounded period holds; 0 for an unbounded or empty one."""
        return max((self.end - self.start).days, 0) if self.start is not None and self.end is not None else 0

    def fits_series(self, grain: Grain) -> bool:
        """A daily series is for a year at most: longer ones are asked by month."""
        return grain is not Grain.DAY or self.days <= MAX_DAILY

    def check_series(self, grain: Grain) -> None:
        if not self.fits_series(grain):
            raise invalid("by", f"day is for periods of up to {MAX_DAILY} days",
                          rule=f"by=day with to - from <= {MAX_DAILY} days")

    def previous(self) -> Period:
        """The period of the same length just before this one (环比): a month for a month."""
        assert self.start is not None and self.end is not None, "previous needs a bounded period"
        if self.start.day == 1 and self.end.day == 1:
            months = (self.end.year - self.start.year) * 12 + self.end.month - self.start.month
            index = self.start.year * 12 + self.start.month - 1 - months
            return Period(date(index // 12, index % 12 + 1, 1), self.start)
        return Period(self.start - (self.end - self.start), self.start)

    def as_dict(self) -> dict[str, str | None]:
        return {"from": None if self.start is None else self.start.isoformat(),
                "to": None if self.end is None else self.end.isoformat()}


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), CHINA)


def _iso_date(text: str | None, field: str) -> date | None:
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise invalid(field, f"{text[:40]!r} is not an ISO date", rule="YYYY-MM-DD, a day in Asia/Shanghai") from None
    return _in_years(day, field)


def _in_years(day: date, field: str) -> date:
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise invalid(field, f"is outside the years {FIRST_YEAR} to {LAST_YEAR}",
                      rule=f"a year from {FIRST_YEAR} to {LAST_YEAR}")
    return day


ALL_TIME = Period()
