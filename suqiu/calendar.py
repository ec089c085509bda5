"""Chinese working days (statutory holidays and 调休) from chinesecalendar, plus overrides."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

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
                "calendar override file (SUQIU_SLA_POLICY [calendar] section)"
            ) from None
