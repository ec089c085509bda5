"""The shared resources of one process: DB pool, codec, reference data, the command service."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import structlog
from psycopg_pool import AsyncConnectionPool

from suqiu.base.calendar import coverage
from suqiu.base.clock import Clock, SystemClock
from suqiu.base.config import Settings
from suqiu.base.metrics import Metrics
from suqiu.base.policy import PolicyError, load_policy, policy_document, unknown_categories
from suqiu.base.sealing import MASTER_KEY_SETTING, MasterKey
from suqiu.domain.refdata import Context
from suqiu.domain.sla import CHINA, SlaPolicy
from suqiu.schemas.codec import Codec
from suqiu.service.commands import CommandService
from suqiu.service.erasure import Erasure
from suqiu.service.personal import PersonalData
from suqiu.service.routing import Router
from suqiu.store import reference
from suqiu.store.keys import KeyResolver
from suqiu.store.subjects import PgKeyStore

log = structlog.get_logger(__name__)
REFRESH_SECONDS = 2.0  # how soon a loaded organisation reaches every process


def master_key(settings: Settings) -> MasterKey:
    """The deployment's master key; a process that stores or reads cases does not start without it."""
    if not settings.master_key_file:
        raise SystemExit(f"set {MASTER_KEY_SETTING}: personal data is encrypted under it "
                         "(`suqiu pii keygen FILE` writes one; `suqiu up` keeps its own in its state directory)")
    return MasterKey.from_file(Path(settings.master_key_file))


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
        self.metrics = Metrics()
        self.subjects = PgKeyStore(self.pool, master_key(settings))
        self.personal = PersonalData(self.subjects, self.subjects.master)
        self.service = CommandService(self.pool, self.codec, lambda: self._context, self.personal, self.clock,
                                      metrics=self.metrics)
        self.keys = KeyResolver(self.pool)
        self.erasure = Erasure(self.subjects, self.service, self.pool, self.clock, settings.system_id)
        self.router = Router(self.pool, self.service, self.codec, lambda: self._context, self.subjects.master,
                             settings.system_id, settings.auto_dispatch)
        self._refresher: asyncio.Task[None] | None = None
        self._org_version = 0

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
        """Reload the organisation when a new version was loaded (suqiu org load): one cheap
        query every REFRESH_SECONDS, the whole organisation only when it changed."""
        async with self.pool.connection() as conn:
            if self._context.departments and await reference.version_async(conn) == self._org_version:
                return
            found = await reference.read_async(conn)
        org = found.organisation
        unknown = unknown_categories(self.policy, org.categories)
        if unknown:
            raise PolicyError(f"the SLA policy names categories the organisation does not have: {', '.join(unknown)} "
                              "(suqiu policy check; GET /v1/categories lists the organisation's)")
        self._context = Context(policy=self.policy, departments=org.departments, jurisdictions=org.jurisdictions,
                                categories=org.categories, merged_on=found.merged_on)
        if self._org_version:
            log.info("organisation reloaded", version=found.version, previous=self._org_version)
        self._org_version = found.version

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception:
                log.warning("organisation refresh failed; the previous version stays in use", exc_info=True)
