"""SLA (时限) arithmetic on a business calendar: pure, the workday predicate is injected."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Protocol

from suqiu.domain.errors import DomainError

# China has kept UTC+8 without daylight saving since 1991; a fixed offset keeps this pure.
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_DAYS = 3660
WARNING_SHARE = 0.8  # 临期预警 when this share of a goal has elapsed, unless the policy says otherwise


class CalendarError(DomainError):
    """The calendar cannot answer (a year with no holiday data): the deployment's configuration,
    not the command, is at fault, so the command is refused (HTTP 503) until it is fixed."""

    configuration = True

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__("calendar_unknown", message, **details)


class Workdays(Protocol):
    """Which days are working days; days from `provisional_from` on are provisional (no notice yet)."""

    @property
    def provisional_from(self) -> date: ...

    @property
    def official_through(self) -> date:
        """The day before `provisional_from`: the last one a notice (or the library) describes."""
        ...

    @property
    def provisional_through(self) -> date:
        """The last day with any answer; later days are refused (CalendarError)."""
        ...

    def __call__(self, day: date, /) -> bool: ...

    def as_placed(self, provisional_from: date) -> Workdays:
        """The same calendar with every day from `provisional_from` on provisional."""
        ...

    def label(self) -> str:
        """Where the official days come from."""
        ...


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Working periods on working days, Asia/Shanghai."""

    is_workday: Workdays
    periods: tuple[tuple[time, time], ...] = ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 30)))
    # The periods as seconds after midnight: every deadline, import and KPI walks these.
    _spans: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    day_seconds: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spans = tuple(sorted((_secs(a), _secs(b)) for a, b in self.periods))
        object.__setattr__(self, "_spans", spans)
        object.__setattr__(self, "day_seconds", sum(b - a for a, b in spans))

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant `seconds` of working time after `start`."""
        day, t = _local(start)
        remaining, spans, whole = seconds, self._spans, self.day_seconds
        for _ in range(MAX_DAYS):
            if self.is_workday(day):
                if t <= spans[0][0] and remaining > whole:
                    remaining -= whole
                else:
                    for a, b in spans:
                        lo = max(a, t)
                        if lo < b or (remaining == 0 and lo <= b):
                            if remaining <= b - lo:
                                return _at(day, lo + remaining)
                            remaining -= b - lo
            day, t = day + ONE_DAY, 0.0
        raise CalendarError(f"no working time within {MAX_DAYS} days of {start.isoformat()}")

    def sub(self, end: datetime, seconds: float) -> datetime:
        """The instant `seconds` of working time before `end`."""
        day, t = _local(end)
        remaining, spans, whole = seconds, self._spans, self.day_seconds
        for _ in range(MAX_DAYS):
            if self.is_workday(day):
                if t >= spans[-1][1] and remaining > whole:
                    remaining -= whole
                else:
                    for a, b in reversed(spans):
                        hi = min(b, t)
                        if a < hi:
                            if remaining <= hi - a:
                                return _at(day, hi - remaining)
                            remaining -= hi - a
            day, t = day - ONE_DAY, 86400.0
        raise CalendarError(f"no working time within {MAX_DAYS} days before {end.isoformat()}")

    def between(self, start: datetime, end: datetime) -> float:
        """Working seconds in [start, end); 0 when end is not after start."""
        if end <= start:
            return 0.0
        (first, t0), (last, t1) = _local(start), _local(end)
        if first == last:
            return self._within(first, t0, t1)
        total = self._within(first, t0, 86400.0) + self._within(last, 0.0, t1)
        day, whole = first + ONE_DAY, self.day_seconds
        while day < last:
            if self.is_workday(day):
                total += whole
            day += ONE_DAY
        return total

    def provisional(self, due: datetime) -> bool:
        """Whether a walk to `due` crossed provisional days (any walk from before it does, if `due` does)."""
        return _local(due)[0] >= self.is_workday.provisional_from

    def as_placed(self, provisional_from: date) -> BusinessCalendar:
        """This calendar as it stood while the days from `provisional_from` on were provisional."""
        return dataclasses.replace(self, is_workday=self.is_workday.as_placed(provisional_from))

    def _within(self, day: date, lo: float, hi: float) -> float:
        if not self.is_workday(day):
            return 0.0
        return sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in self._spans)


@dataclass(frozen=True, slots=True)
class Goal:
    """Time limits for one category and priority, in working minutes; wall_clock for 特事特办."""

    accept_minutes: int
    resolve_minutes: int
    follow_up_minutes: int
    wall_clock: bool = False


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """Goals by (category, priority), with warning share and supervision delay."""

    calendar: BusinessCalendar
    default: Goal
    goals: Mapping[tuple[str, str], Goal] = field(default_factory=dict)
    warning_share: float = WARNING_SHARE
    supervision_after_minutes: int = 240
    max_extensions: int = 1
    version: str = "default"

    def goal(self, category: str, priority: str) -> Goal:
        return (
            self.goals.get((category, priority))
            or self.goals.get(("*", priority))
            or self.goals.get((category, "*"))
            or self.default
        )

    def after(self, goal: Goal, start: datetime, minutes: float) -> datetime:
        if goal.wall_clock:
            return start + timedelta(minutes=minutes)
        return self.calendar.add(start, minutes * 60)

    def before(self, goal: Goal, end: datetime, minutes: float) -> datetime:
        if goal.wall_clock:
            return end - timedelta(minutes=minutes)
        return self.calendar.sub(end, minutes * 60)

    def working_minutes(self, goal: Goal, start: datetime, end: datetime) -> float:
        if goal.wall_clock:
            return max(0.0, (end - start).total_seconds() / 60)
        return self.calendar.between(start, end) / 60

    def provisional(self, goal: Goal, due: datetime) -> bool:
        """Whether `due` was placed on provisional days (never for a wall-clock goal)."""
        return not goal.wall_clock and self.calendar.provisional(due)

    def goal_minutes(self, goal: Goal, clock: str) -> int:
        return {"accept": goal.accept_minutes, "resolve": goal.resolve_minutes,
                "follow_up": goal.follow_up_minutes}[clock]

    def days(self, working_days: int) -> int:
        """Working days as working minutes on this calendar."""
        return working_days * self.calendar.day_seconds // 60


ONE_DAY = timedelta(days=1)


def _secs(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _local(at: datetime) -> tuple[date, float]:
    """The China date of `at` and its seconds after local midnight."""
    local = at.astimezone(CHINA)
    return local.date(), _secs(local.time()) + local.microsecond / 1e6


def _at(day: date, seconds: float) -> datetime:
    return datetime.combine(day, time(), CHINA) + timedelta(seconds=seconds)
