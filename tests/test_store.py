"""The event store's group commit against real PostgreSQL: each command whole or absent, none lost."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from typing import Any

import psycopg
import pytest

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.domain import Case, CommandMeta, DomainError, decide
from suqiu.domain.commands import parse_command
from suqiu.domain.model import Actor, Role
from suqiu.schemas.codec import GENESIS
from suqiu.service.commands import CommandRequest, new_id
from suqiu.service.runtime import Runtime
from suqiu.store import events as store
from tests.conftest import SYSTEM, count_rows, stored, submission
from tests.support.sla import chain_ok

INTAKE = Actor(SYSTEM, Role.INTAKE)
DISPATCHER = Actor(SYSTEM, Role.DISPATCHER)


def new_case(runtime: Runtime, clock: ManualClock, *, command_id: str | None = None, case_id: str | None = None,
             source_ref: str | None = None) -> store.Append:
    """A submit's append, decided and chained as the service would."""
    body = submission(**({"source_ref": source_ref} if source_ref else {}))
    body.pop("command_id")
    command = parse_command("submit", body)
    command_id, case_id = command_id or str(uuid.uuid4()), case_id or new_id()
    meta = CommandMeta(command_id=command_id, case_id=case_id, actor=INTAKE, issued_at=clock.now(),
                       event_ids=(new_id(), new_id()))
    events = decide(Case(case_id=case_id), command, meta, runtime.context)
    encoded = runtime.service._encode(events, GENESIS)
    result = {"status": "created", "command_id": command_id, "case_id": case_id, "seq": 1}
    return store.Append(encoded, command_id, b"\x00" * 32, result, (body["source_system"], body["source_ref"]))


async def test_a_refused_command_in_a_batch_stores_nothing_and_the_others_are_stored(
        settings: Settings, runtime: Runtime, clock: ManualClock) -> None:
    first, second = new_case(runtime, clock), new_case(runtime, clock)
    async with runtime.pool.connection() as conn:
        assert await store.append_many(conn, [first, second]) == [None, None]
    before = stored(settings)
    batch = [
        new_case(runtime, clock),                                      # stored
        new_case(runtime, clock, command_id=first.command_id),         # the command id is taken
        new_case(runtime, clock, case_id=second.encoded[0].event.case_id),  # seq 1 of that case is taken
        new_case(runtime, clock, source_ref=first.source[1] if first.source else ""),  # the source ref is taken
        new_case(runtime, clock),                                      # stored, after three refusals
    ]
    async with runtime.pool.connection() as conn:
        outcome = await store.append_many(conn, batch)
    kinds: list[Any] = [type(o) if o else None for o in outcome]
    assert kinds == [None, store.DuplicateCommand, store.CaseConflict, store.DuplicateCommand, None]
    after = stored(settings)
    assert after == {"events": before["events"] + 2, "commands": before["commands"] + 2,
                     "source_refs": before["source_refs"] + 2, "outbox": before["outbox"] + 2}
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        kept = {r[0] for r in conn.execute("SELECT command_id FROM commands")}
        cases = {r[0] for r in conn.execute("SELECT case_id FROM events")}
    assert {batch[0].command_id, batch[4].command_id} <= kept and not {batch[2].command_id, batch[3].command_id} & kept
    assert batch[3].encoded[0].event.case_id not in cases


async def test_two_processes_group_committing_on_the_same_cases_lose_nothing(
        settings: Settings, runtime: Runtime, clock: ManualClock) -> None:
    """Two runtimes stand for two API processes: their batches race on the same cases' next seq."""
    other = await Runtime(settings, clock=clock).open()
    try:
        cases = []
        for _ in range(3):
            body = submission()
            created = await runtime.service.execute(CommandRequest("submit", body.pop("command_id"), INTAKE, body))
            await runtime.service.execute(CommandRequest("dispatch", str(uuid.uuid4()), DISPATCHER,
                                                         {"department": "bh-market"}, case_id=created.case_id))
            cases.append(created.case_id)
        services = itertools.cycle([runtime.service, other.service])
        urges = [(next(services), CommandRequest("urge", str(uuid.uuid4()), DISPATCHER, {"note": f"w{i}"},
                                                 case_id=cases[i % 3])) for i in range(60)]
        results = await asyncio.gather(*(service.execute(req) for service, req in urges))
    finally:
        await other.close()
    assert {r.status for r in results} == {"accepted"}
    for case in cases:
        assert chain_ok(settings, case)  # seq 1, 2, 3 ... with no gap, every hash chained
    assert count_rows(settings, "events") == 3 * 2 + 60 == count_rows(settings, "outbox")
    assert count_rows(settings, "commands") == 3 * 2 + 60


async def test_a_process_with_a_stale_view_of_a_case_decides_on_the_stored_one(
        settings: Settings, runtime: Runtime, clock: ManualClock) -> None:
    """Another process has moved the case on since this one last saw it: neither a refusal nor an
    append may stand on the stale view."""
    other = await Runtime(settings, clock=clock).open()
    try:
        body = submission()
        created = await runtime.service.execute(CommandRequest("submit", body.pop("command_id"), INTAKE, body))
        case_id = created.case_id
        # The other process dispatches: this process still holds the case as submitted.
        await other.service.execute(CommandRequest("dispatch", str(uuid.uuid4()), DISPATCHER,
                                                   {"department": "bh-market"}, case_id=case_id))
        # On the stale view an acceptance would be refused (nothing was dispatched); on the stored one it stands.
        department = Actor(SYSTEM, Role.DEPARTMENT, department="bh-market")
        accept = CommandRequest("accept", str(uuid.uuid4()), department, {}, case_id=case_id)
        accepted = await runtime.service.execute(accept)
        assert (accepted.status, accepted.seq) == ("accepted", 3)
        # The other process last saw seq 2.
        urged = await other.service.execute(CommandRequest("urge", str(uuid.uuid4()), DISPATCHER, {"note": "x"},
                                                           case_id=case_id))
        assert (urged.status, urged.seq) == ("accepted", 4)
        # A repeat answers the original result.
        again = await runtime.service.execute(accept)
        assert (again.status, again.seq, again.event_ids) == ("duplicate", 3, accepted.event_ids)
    finally:
        await other.close()
    assert chain_ok(settings, case_id)
    assert count_rows(settings, "events") == 4


async def test_a_repeated_submit_answers_the_original_case_without_a_new_one(
        settings: Settings, runtime: Runtime) -> None:
    """A submit is decided and appended without reading first; the constraints catch a repeat."""
    body = submission()
    command_id = body.pop("command_id")
    first = await runtime.service.execute(CommandRequest("submit", command_id, INTAKE, dict(body)))
    again = await runtime.service.execute(CommandRequest("submit", command_id, INTAKE, dict(body)))
    by_source = await runtime.service.execute(CommandRequest("submit", str(uuid.uuid4()), INTAKE, dict(body)))
    assert first.status == "created"
    assert (again.status, again.case_id, again.event_ids) == ("duplicate", first.case_id, first.event_ids)
    assert (by_source.status, by_source.case_id) == ("duplicate", first.case_id)
    other = {**body, "source_ref": "another", "title": "另一个诉求"}
    with pytest.raises(DomainError) as refused:
        await runtime.service.execute(CommandRequest("submit", command_id, INTAKE, other))
    assert refused.value.code == "idempotency_mismatch"
    assert count_rows(settings, "events") == 1 == count_rows(settings, "commands")


async def test_an_item_the_database_refuses_fails_alone_and_its_batch_neighbours_are_stored(
        settings: Settings, runtime: Runtime, clock: ManualClock) -> None:
    # The input rules refuse a NUL before it reaches the store; data an older client or a bug lets
    # through must still fail alone. PostgreSQL's text cannot hold a NUL: psycopg refuses it.
    good = [new_case(runtime, clock) for _ in range(40)]
    poison = dataclasses.replace(new_case(runtime, clock), source=("hotline-12345", "TJ\x00poison"))
    commits = runtime.service._commits
    outcome = await asyncio.gather(*(commits.append(a) for a in [*good[:20], poison, *good[20:]]),
                                   return_exceptions=True)
    assert isinstance(outcome[20], psycopg.DataError), outcome[20]
    assert [o for i, o in enumerate(outcome) if i != 20] == [None] * 40
    assert stored(settings)["source_refs"] == 40
