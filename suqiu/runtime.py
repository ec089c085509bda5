"""The shared resources of one process: DB pool, codec, reference data, the command service."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from psycopg_pool import AsyncConnectionPool

from schemas.codec import Codec
from suqiu.calendar import coverage
from suqiu.clock import Clock, SystemClock
from suqiu.config import Settings
from suqiu.domain.refdata import Context
from suqiu.domain.sla import CHINA, SlaPolicy
from suqiu.policy import load_policy, policy_document
from suqiu.service import CommandService
from suqiu.store import reference
from suqiu.store.keys import KeyResolver

log = structlog.get_logger(__name__)
REFRESH_SECONDS = 30.0


class Runtime:
    """Open once per process; everything that talks to PostgreSQL goes through it."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, policy: SlaPolicy | None = None,
                 pool_size: int = 10) -> None:
        assert settings.database_url, "database_url is required"
        self.settings = settings
        self.clock = clock or SystemClock()
        self.codec = Codec()
        # The document is kept so a policy change can be registered and rolled out (streams/sla.py).
        self.policy_document = None if policy else policy_document(settings.sla_policy)
        self.policy = policy or load_policy(settings.sla_policy, self.policy_document)
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.database_url, min_size=2, max_size=pool_size, open=False, kwargs={"autocommit": True},
        )
        self._context = Context(policy=self.policy)
        self.service = CommandService(self.pool, self.codec, lambda: self._context, self.clock)
        self.keys = KeyResolver(self.pool)
        self._refresher: asyncio.Task[None] | None = None

    async def open(self) -> Runtime:
        await self.pool.open(wait=True, timeout=30)
        calendar = self.calendar_coverage()
        if calendar["status"] != "ok":
            log.warning("the official business calendar runs out soon: later deadlines are provisional", **calendar)
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever())
        return self

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.service.close()
        await self.pool.close()

    def calendar_coverage(self) -> dict[str, Any]:
        """How far ahead the policy's calendar can place deadlines (for /v1/health and the logs)."""
        return coverage(self.policy.calendar.is_workday, self.clock.now().astimezone(CHINA).date())

    @property
    def context(self) -> Context:
        return self._context

    async def refresh(self) -> None:
        """Reload departments and jurisdictions (they change rarely, by admins)."""
        async with self.pool.connection() as conn:
            departments, jurisdictions = await reference.load(conn)
        self._context = Context(policy=self.policy, departments=departments, jurisdictions=jurisdictions)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception:
                log.warning("reference data refresh failed", exc_info=True)
