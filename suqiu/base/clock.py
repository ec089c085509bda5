"""Time as a dependency: the system clock, and a settable one for tests and simulations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


def _ms(t: datetime) -> datetime:
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


class SystemClock:
    """UTC wall clock at millisecond precision (what Avro timestamp-millis keeps)."""

    def now(self) -> datetime:
        return _ms(datetime.now(UTC))


class ManualClock:
    """A clock that moves only when told to: SLA tests cross business days in milliseconds."""

    def __init__(self, start: datetime) -> None:
        self._now = _ms(start.astimezone(UTC))

    def now(self) -> datetime:
        return self._now

    def set(self, t: datetime) -> None:
        self._now = _ms(t.astimezone(UTC))

    def advance(self, delta: timedelta) -> None:
        self._now = _ms(self._now + delta)
