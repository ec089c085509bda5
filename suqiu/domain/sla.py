"""SLA (时限) arithmetic on a business calendar: pure, the workday predicate is injected."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

# China has kept UTC+8 without daylight saving since 1991; a fixed offset keeps this pure.
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_DAYS = 3660


class CalendarError(Exception):
    """The calendar cannot answer (e.g. a year with no holiday data): a configuration error."""


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Working periods on working days, Asia/Shanghai."""

    is_workday: Callable[[date], bool]
    periods: tuple[tuple[time, time], ...] = ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 30)))

    @property
    def day_seconds(self) -> int:
        return sum(_secs(b) - _secs(a) for a, b in self.periods)

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant `seconds` of working time after `start`."""
        local = start.astimezone(CHINA)
        day, t = local.date(), _secs(local.timetz()) + local.microsecond / 1e6
        remaining = seconds
        for _ in range(MAX_DAYS):
            if self.is_workday(day):
                for a, b in self.periods:
                    lo, hi = max(_secs(a), t), _secs(b)
                    if lo < hi or (remaining == 0 and lo <= hi):
                        if remaining <= hi - lo:
                            return _at(day, lo + remaining)
                        remaining -= hi - lo
            day, t = day + timedelta(days=1), 0.0
        raise CalendarError(f"no working time within {MAX_DAYS} days of {start.isoformat()}")

    def sub(self, end: datetime, seconds: float) -> datetime:
        """The instant `seconds` of working time before `end`."""
        local = end.astimezone(CHINA)
        day, t = local.date(), _secs(local.timetz()) + local.microsecond / 1e6
        remaining = seconds
        for _ in range(MAX_DAYS):
            if self.is_workday(day):
                for a, b in reversed(self.periods):
                    lo, hi = _secs(a), min(_secs(b), t)
                    if lo < hi:
                        if remaining <= hi - lo:
                            return _at(day, hi - remaining)
                        remaining -= hi - lo
            day, t = day - timedelta(days=1), 86400.0
        raise CalendarError(f"no working time within {MAX_DAYS} days before {end.isoformat()}")

    def between(self, start: datetime, end: datetime) -> float:
        """Working seconds in [start, end); 0 when end is not after start."""
        if end <= start:
            return 0.0
        a, b = start.astimezone(CHINA), end.astimezone(CHINA)
        total = 0.0
        day = a.date()
        while day <= b.date():
            if self.is_workday(day):
                for p, q in self.periods:
                    lo = max(_at(day, _secs(p)), a)
                    hi = min(_at(day, _secs(q)), b)
                    if hi > lo:
                        total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total


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
    warning_share: float = 0.8
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

    def goal_minutes(self, goal: Goal, clock: str) -> int:
        return {"accept": goal.accept_minutes, "resolve": goal.resolve_minutes,
                "follow_up": goal.follow_up_minutes}[clock]

    def days(self, working_days: int) -> int:
        """Working days as working minutes on this calendar."""
        return working_days * self.calendar.day_seconds // 60


def _secs(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _at(day: date, seconds: float) -> datetime:
    return datetime.combine(day, time(), CHINA) + timedelta(seconds=seconds)
