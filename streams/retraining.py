"""The routing model's retraining timer (智能分拨): trains again when the newest model is old enough."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from suqiu.service.routing import TooLittleHistory, TrainingBusy, retrain_if_due
from suqiu.service.runtime import Runtime

log = structlog.get_logger(__name__)
CHECK_SECONDS = 3600.0


async def run_retraining(rt: Runtime, days: float, check: float = CHECK_SECONDS) -> None:
    """Every `check` seconds, retrain if the newest model is `days` old (0: never, the default)."""
    if days <= 0:
        return
    every = timedelta(days=days)
    while True:
        try:
            trained = await retrain_if_due(rt.pool, rt.context, rt.subjects.master, rt.clock.now(), every)
            if trained is not None:
                log.info("routing model retrained on schedule", version=trained.info.version,
                         active=trained.info.active, decision=trained.info.decision)
        except (TooLittleHistory, TrainingBusy) as exc:
            log.info("routing model not retrained", reason=str(exc))
        except Exception:
            log.warning("routing model retraining failed; it is tried again at the next check", exc_info=True)
        await asyncio.sleep(check)
