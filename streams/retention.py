"""The retention timer of personal data: erases, through the command path, what has been kept long enough."""

from __future__ import annotations

import asyncio

import structlog

from suqiu.service.erasure import Erasure

log = structlog.get_logger(__name__)


async def run_retention(erasure: Erasure, days: int, interval: float) -> None:
    """Sweep every `interval` seconds (a failed sweep is logged and tried again at the next)."""
    if days <= 0:
        log.info("personal data retention is off (SUQIU_PERSONAL_DATA_DAYS=0)")
        return
    while True:
        try:
            await erasure.sweep(days)
        except Exception:
            log.warning("personal data retention sweep failed; it runs again", exc_info=True)
        await asyncio.sleep(interval)
