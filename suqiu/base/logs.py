"""structlog on stderr: JSON lines, or readable lines on a terminal; context bound per call.

SUQIU_LOG_FORMAT (`json` or `console`) overrides the choice; `suqiu up` passes its own on to
the processes it starts, whose stderr is a pipe to it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import IO, Any

import structlog
from structlog.typing import Processor

LIBRARIES = ("aiokafka", "kafka", "faust", "mode")  # their INFO is chatter; WARNING and up is kept
REPEAT_SECONDS = 30.0
# Faust's liveness check for a partition with no fetch yet compares with the time since the
# worker started, not since the partition was assigned: after a stall (SIGSTOP, a long GC, a
# rebalance) a newly assigned, quiet partition is reported for minutes. docs/operations.md says
# what to watch instead (suqiu_projector_lag_events, /v1/health's lag).
FAUST_FALSE_ALARMS = ("has not sent fetch request for", "has not received fetch response for")


class Repeats(logging.Filter):
    """One line per kind of library warning per interval; the next one says how many were held back.
    Faust's false alarms after a stall (FAUST_FALSE_ALARMS) are not let through at all.

    When the broker goes away, every aiokafka client logs each reconnect attempt, a few per
    second each: hundreds of identical lines that hide the one that matters. A kind is the
    logger, the level and the message template (before its arguments are filled in).
    """

    def __init__(self, interval: float = REPEAT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # kind -> [last let through, held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(LIBRARIES):
            return True
        if record.name.startswith("faust") and any(alarm in str(record.msg) for alarm in FAUST_FALSE_ALARMS):
            return False
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._seen.get(kind)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.repeated = int(seen[1])  # rendered as a field: held back since the last line
        self._seen[kind] = [now, 0]
        return True


def _renderer() -> list[Processor]:
    if log_format() == "json":
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(ensure_ascii=False)]
    return [structlog.dev.ConsoleRenderer(colors=False)]


def _add_repeated(logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event.get("_record")
    repeated = getattr(record, "repeated", None)
    if repeated:
        event["repeated"] = repeated
        event["repeated_within_s"] = REPEAT_SECONDS
    return event


def library_handler(stream: IO[str] | None = None) -> logging.Handler:
    """The handler for the standard library's logging (aiokafka, Faust): the same renderer as
    ours, with repeats held back."""
    handler = logging.StreamHandler(stream or sys.__stderr__ or sys.stderr)
    handler.addFilter(Repeats())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True), _add_repeated],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_renderer()]))
    return handler


def faust_logging(level: str = "WARNING") -> dict[str, Any]:
    """A logging config for faust.Worker, which otherwise puts its own colour handler on stdout."""
    return {"version": 1, "disable_existing_loggers": False,
            "handlers": {"suqiu": {"()": library_handler, "level": level}},
            "root": {"level": level, "handlers": ["suqiu"]}}


def configure(level: str = "INFO") -> None:
    number = getattr(logging, level.upper(), logging.INFO)
    handler = library_handler(sys.stderr)
    handler.setLevel(number)  # a library that turns its own logger to DEBUG does not reach the terminal
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)
    for library in LIBRARIES:
        logging.getLogger(library).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *_renderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        # Bound now: Faust later redirects sys.stderr into its own logging, which would wrap each line.
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        # Not cached: a few µs per call, and a later configure (tests, the CLI) takes effect everywhere.
        cache_logger_on_first_use=False,
    )


def log_format() -> str:
    """`json`, the default, or `console` on a terminal (or as SUQIU_LOG_FORMAT says)."""
    chosen = os.environ.get("SUQIU_LOG_FORMAT", "")
    if chosen in ("json", "console"):
        return chosen
    return "console" if sys.stderr.isatty() else "json"


def child_env() -> dict[str, str]:
    """What a child process needs to log as this one does."""
    return {"SUQIU_LOG_FORMAT": log_format()}
