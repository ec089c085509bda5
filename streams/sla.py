"""SLA timers (时限): fire the warnings, breaches and supervisions that have fallen due.

The projector keeps one row per owed SLA event in `sla_timers`; this compares "now" with
those rows for the partitions this worker owns and sends each due one through the command
path. Command ids are derived from (case, clock, kind, deadline), and the decider treats
repeats as no-ops, so a timer firing twice (a rebalance, a restart) stores one event.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

import structlog
from psycopg_pool import AsyncConnectionPool

from suqiu.base.clock import Clock
from suqiu.base.policy import load_policy
from suqiu.domain import DomainError
from suqiu.domain.clocks import CLOCK_STATES
from suqiu.domain.model import TERMINAL, Actor, Role
from suqiu.domain.sla import SlaPolicy
from suqiu.schemas.codec import to_json_value
from suqiu.service.commands import CommandRequest, CommandService

log = structlog.get_logger(__name__)
NAMESPACE = uuid.UUID("5d1c7a52-61a4-4d8e-9a43-3c1b0f0e5a51")
COMMANDS = {"warning": "record_sla_warning", "breach": "record_sla_breach", "supervision": "open_supervision"}
RETRY_AFTER = timedelta(seconds=60)
ENDED = frozenset(s.value for s in TERMINAL)
# A refused timer waits and is tried again; the projector may replace or delete the row meanwhile.
RETRY_SQL = "UPDATE sla_timers SET fire_at = %s WHERE case_id = %s AND clock = %s AND kind = %s"


def timer_command_id(case_id: str, clock: str, kind: str, due_at: datetime) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{case_id}/{clock}/{kind}/{due_at.isoformat()}"))


class SlaTimers:
    """Fires due SLA timers for the partitions a worker owns; safe to run in every worker."""

    def __init__(self, pool: AsyncConnectionPool[Any], service: CommandService, clock: Clock, system_id: str,
                 *, batch: int = 500, concurrency: int = 32) -> None:
        self.pool = pool
        self.service = service
        self.clock = clock
        self.actor = Actor(system_id, Role.SYSTEM, person="sla-timer")
        self.batch = batch
        self.concurrency = concurrency

    async def run(self, owned: Callable[[], Collection[int]], policy: SlaPolicy, interval: float) -> None:
        """Tick until cancelled: fire what is due in the partitions `owned()` names, then re-plan.

        A loop, not Faust's app.timer: a tick firing a burst of deadlines can outlast the
        interval, and Faust then skips the next tick and warns that the two overlap.
        """
        while True:
            try:
                while await self.fire_due(owned()) >= self.batch:
                    pass
                await self.revise_provisional(policy)
            except Exception:
                # Every tick compares now with the stored deadlines, so the next one catches up.
                log.warning("sla timer tick failed", exc_info=True)
            await asyncio.sleep(interval)

    async def fire_due(self, partitions: Collection[int]) -> int:
        """Fire what is due now; returns how many timers were handled."""
        if not partitions:
            return 0
        now = self.clock.now()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT case_id, clock, kind, fire_at, due_at FROM sla_timers "
                "WHERE partition = ANY(%s) AND fire_at <= %s ORDER BY fire_at LIMIT %s",
                (list(partitions), now, self.batch), prepare=True,
            )
            due = await cur.fetchall()
        if not due:
            return 0
        gate = asyncio.Semaphore(self.concurrency)

        async def fire(row: tuple[Any, ...]) -> tuple[Any, ...] | None:
            async with gate:
                return await self._fire(*row)

        outcomes = await asyncio.gather(*(fire(r) for r in due))
        done = [r for r, retry in zip(due, outcomes, strict=True) if retry is None]
        later = [retry for retry in outcomes if retry is not None]
        async with self.pool.connection() as conn, conn.pipeline(), conn.cursor() as c:
            # The fired row goes now; the projector would drop it anyway once the event is back.
            await c.executemany("DELETE FROM sla_timers WHERE case_id = %s AND clock = %s AND kind = %s "
                                "AND fire_at = %s", [r[:4] for r in done])
            if later:
                await c.executemany(RETRY_SQL, later)
        return len(due)

    async def revise_provisional(self, policy: SlaPolicy) -> int:
        """Re-plan the open cases whose provisional deadlines now lie on official days (日历修订).

        Runs every tick in every worker: the partial index holds only cases with provisional
        deadlines, and the command ids derive from (case, calendar), so two workers, a restart or
        a repeat before the read model caught up store one revision per case.
        """
        workdays = policy.calendar.is_workday
        through = workdays.official_through
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT case_id FROM case_view WHERE provisional_from <= %s "
                                     "ORDER BY provisional_from LIMIT %s", (through, self.batch), prepare=True)
            cases = [r[0] for r in await cur.fetchall()]
        if not cases:
            return 0
        label = workdays.label()
        body = {"official_through": through.isoformat(), "calendar": label}
        actor = Actor(self.actor.system, Role.SYSTEM, person="sla-calendar")
        gate = asyncio.Semaphore(self.concurrency)

        async def revise(case_id: str) -> None:
            command_id = str(uuid.uuid5(NAMESPACE, f"{case_id}/calendar/{through.isoformat()}/{label}"))
            async with gate:
                try:
                    result = await self.service.execute(CommandRequest("revise_sla_calendar", command_id, actor,
                                                                       body, case_id=case_id))
                except DomainError as exc:
                    log.warning("calendar revision refused", case_id=case_id, command_id=command_id,
                                code=exc.code, reason=exc.message)
                    return
            if result.status == "accepted":
                log.info("provisional deadlines re-planned", case_id=case_id, command_id=command_id,
                         official_through=through.isoformat(), event_id=result.event_ids[0])

        await asyncio.gather(*(revise(c) for c in cases))
        return len(cases)

    async def _fire(self, case_id: str, clock: str, kind: str, fire_at: datetime,
                    due_at: datetime) -> tuple[Any, ...] | None:
        body: dict[str, Any] = {"clock": clock}
        if kind == "supervision":
            body["reason"] = f"{clock} deadline {to_json_value(due_at)} breached and still open: 督办"
        else:
            body["due_at"] = due_at.isoformat()
        command_id = timer_command_id(case_id, clock, kind, due_at)
        try:
            result = await self.service.execute(CommandRequest(COMMANDS[kind], command_id, self.actor, body,
                                                               case_id=case_id))
        except DomainError as exc:
            if exc.code == "invalid_state" and exc.details.get("state") in ENDED:
                # The store has the case closed or withdrawn before the read model does: the clock
                # ended with it, and a reopening plans new timers with new deadlines.
                log.info("sla timer moot: the case has ended", case_id=case_id, command_id=command_id, clock=clock,
                         kind=kind, state=exc.details["state"])
                return None
            # The projection may trail the store; try again later rather than lose the timer.
            (log.error if exc.configuration else log.warning)(
                "sla timer refused", case_id=case_id, command_id=command_id, clock=clock, kind=kind,
                code=exc.code, reason=exc.message)
            return (self.clock.now() + RETRY_AFTER, case_id, clock, kind)
        log.info("sla timer fired", case_id=case_id, command_id=command_id, clock=clock, kind=kind,
                 status=result.status, event_id=result.event_ids[0] if result.event_ids else None)
        return None


async def roll_out_policy(pool: AsyncConnectionPool[Any], service: CommandService, policy: SlaPolicy,
                          document: str, clock: Clock, system_id: str) -> int:
    """Register the running policy; when it is new, move every open case's deadlines to its goals.

    Each case gets an ApplySlaPolicy command carrying the goals it replaces, so the change is an
    event in every affected history; closed cases are not touched. Safe to run in every worker.
    """
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT version, rolled_out_at FROM sla_policy_versions "
                                 "ORDER BY activated_at DESC LIMIT 1")
        latest = await cur.fetchone()
        if latest is not None and latest[0] == policy.version and latest[1] is not None:
            return 0
        if latest is None or latest[0] != policy.version:
            await conn.execute(
                "INSERT INTO sla_policy_versions (version, document, activated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (version) DO UPDATE SET activated_at = EXCLUDED.activated_at, rolled_out_at = NULL",
                (policy.version, document, clock.now()))
        cur = await conn.execute("SELECT version, document FROM sla_policy_versions WHERE version <> %s "
                                 "ORDER BY activated_at DESC LIMIT 1", (policy.version,))
        prior = await cur.fetchone()
        rows: list[tuple[Any, ...]] = []
        if prior is not None:
            cur = await conn.execute("SELECT case_id, category, priority FROM case_view WHERE status = ANY(%s)",
                                     ([s.value for s in sorted(CLOCK_STATES)],))
            rows = list(await cur.fetchall())
    if prior is not None:
        previous = load_policy(text=prior[1])
        actor = Actor(system_id, Role.SYSTEM, person="sla-policy")
        gate = asyncio.Semaphore(16)

        async def apply(case_id: str, category: str, priority: str) -> None:
            goal = previous.goal(category, priority)
            body = {"policy_version": policy.version, "previous_version": prior[0],
                    "previous_accept_minutes": goal.accept_minutes, "previous_resolve_minutes": goal.resolve_minutes,
                    "previous_follow_up_minutes": goal.follow_up_minutes}
            command_id = str(uuid.uuid5(NAMESPACE, f"{case_id}/policy/{policy.version}"))
            async with gate:
                try:
                    await service.execute(CommandRequest("apply_sla_policy", command_id, actor, body, case_id=case_id))
                except DomainError as exc:
                    if exc.configuration:  # not this case's doing: fail the roll-out, the next start retries it
                        raise
                    log.info("policy not applied", case_id=case_id, command_id=command_id, reason=exc.message)

        outcomes = await asyncio.gather(*(apply(*r) for r in rows), return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:  # every case was tried; not marked rolled out, so the next worker start tries again
            raise failed[0]
        log.info("sla policy rolled out", version=policy.version, previous=prior[0], open_cases=len(rows))
    async with pool.connection() as conn:
        await conn.execute("UPDATE sla_policy_versions SET rolled_out_at = %s WHERE version = %s",
                           (clock.now(), policy.version))
    return len(rows)
