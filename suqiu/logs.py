"""structlog as JSON lines on stderr; context (case_id, command_id, event_id) bound per call."""

from __future__ import annotations

import logging
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
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        # Bound now: Faust later redirects sys.stderr into its own logging, which would wrap each line.
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        # Not cached: a few µs per call, and a later configure (tests, the CLI) takes effect everywhere.
        cache_logger_on_first_use=False,
    )
