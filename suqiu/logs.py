"""structlog on stderr: JSON lines, or readable lines on a terminal; context bound per call.

SUQIU_LOG_FORMAT (`json` or `console`) overrides the choice; `suqiu up` passes its own on to
the processes it starts, whose stderr is a pipe to it.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO), format="%(message)s")
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *([structlog.processors.format_exc_info, structlog.processors.JSONRenderer(ensure_ascii=False)]
              if log_format() == "json" else [structlog.dev.ConsoleRenderer(colors=False)]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
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
