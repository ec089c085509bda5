"""The command path shared by HTTP, Kafka and the SLA agents: parse, dedupe, decide, append."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import time
import typing
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, NamedTuple

import structlog
import uuid_utils
from psycopg_pool import AsyncConnectionPool

from suqiu.base.clock import Clock, SystemClock
from suqiu.base.metrics import Metrics
from suqiu.domain import Case, CommandMeta, DomainError, decide, evolve, inputs
from suqiu.domain.access import Principal
from suqiu.domain.commands import ImportCase, MergeInto, Submit, hashed_fields, parse_command
from suqiu.domain.events import Event
from suqiu.domain.model import Actor, plain
from suqiu.domain.personal import Sealed
from suqiu.domain.refdata import Context
from suqiu.schemas.codec import GENESIS, Codec, stored_hash
from suqiu.service.personal import PersonalData
from suqiu.store import events as store
from suqiu.store.group import GroupCommit, GroupRead

log = structlog.get_logger(__name__)
CACHE_SIZE = 20_000
RETRIES = 10


def _checked(req: CommandRequest) -> CommandRequest:
    """The request with its envelope validated as every boundary must (suqiu.domain.inputs)."""
    if not isinstance(req.type, str) or not req.type:
        raise DomainError("invalid_input", "type: is required (dispatch, accept, ...)", field="type")
    def optional(value: str | None, name: str) -> str | None:
        return None if value is None else inputs.identifier(value, name)

    return dataclasses.replace(
        req, command_id=inputs.identifier(req.command_id, "command_id"), case_id=optional(req.case_id, "case_id"),
        expected_seq=inputs.expected_seq(req.expected_seq),
        correlation_id=optional(req.correlation_id, "correlation_id"),
        causation_id=optional(req.causation_id, "causation_id"))


def new_id() -> str:
    """A UUIDv7 for a new case or event: time-ordered, so the store's unique indexes grow at their
    right edge instead of touching a random page per insert."""
    return str(uuid_utils.uuid7())


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A command as it arrives on any channel, before parsing."""

    type: str
    command_id: str
    actor: Actor
    body: Mapping[str, Any]
    case_id: str | None = None
    expected_seq: int | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    # The authenticated key behind `actor` (HTTP, signed Kafka): its bindings scope what it may do.
    principal: Principal | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """status: created (new case), accepted, duplicate (original result), unchanged (no-op)."""

    status: str
    command_id: str
    case_id: str
    seq: int
    event_ids: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "command_id": self.command_id, "case_id": self.case_id,
                "seq": self.seq, "event_ids": list(self.event_ids),
                "event_id": self.event_ids[0] if self.event_ids else None}


class _Again(Enum):
    """Why a decided command must be decided again."""

    RACED = "another writer appended to the case first"
    REPEAT = "the command id is stored already: read its result first"


class Parsed(NamedTuple):
    """A request checked: its command, the hash a repeat of its command id is compared by, and
    for a submit its personal fields as sealed (the command then holds marks, not the fields)."""

    req: CommandRequest
    command: Any
    request_hash: bytes
    personal: Sealed | None = None


def _parsed(raw: CommandRequest) -> Parsed:
    """Validate a request once, at the command path's door: its envelope, its command's fields, and
    the hash a repeat of its command id is compared by (over the fields as sent, before sealing)."""
    req = _checked(raw)
    command = parse_command(req.type, req.body)
    if not isinstance(command, Submit) and not req.case_id:
        raise DomainError("invalid_input", "case_id: is required for lifecycle commands", field="case_id")
    return Parsed(req, command, _request_hash(req, command))


class CommandService:
    """Executes commands against the store; keeps recently used cases decoded in memory."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], codec: Codec, context: Callable[[], Context],
        personal: PersonalData, clock: Clock | None = None, new_id: Callable[[], str] = new_id,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool = pool
        self._personal = personal
        self._codec = codec
        self._context = context
        self._clock = clock or SystemClock()
        self._new_id = new_id
        self._cases: OrderedDict[str, tuple[Case, bytes]] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._metrics = metrics or Metrics()
        self._commits = GroupCommit(pool, observe=self._metrics.group_commit.observe)
        self._reads = GroupRead(pool)

    async def execute(self, req: CommandRequest) -> CommandResult:
        """One command (HTTP, Kafka, the timers): its result, or the DomainError that refuses it."""
        answer = (await self.run([req]))[0]
        if isinstance(answer, DomainError):
            raise answer
        return answer

    async def run(self, reqs: Sequence[CommandRequest]) -> list[CommandResult | DomainError]:
        """The command path, for one command or many (an import's chunk): each is parsed once and
        decided on its own case, with its own chain and idempotency; the answers come in order.

        Only the store step depends on how many come: new cases that come together share one COPY
        in one transaction (a chunk is stored whole or not at all); a command alone goes through
        the group commit, retried on its case when another writer got there first.
        """
        parsed: list[Parsed | DomainError] = []
        for raw in reqs:
            try:
                parsed.append(_parsed(raw))
            except DomainError as exc:
                self._metrics.command(raw.type, exc.code, None)
                parsed.append(exc)
        parsed = await self._sealed(parsed)
        new = [p for p in parsed if not isinstance(p, DomainError) and isinstance(p.command, Submit)]
        answers: dict[str, CommandResult | DomainError] = await self._create(new) if len(new) > 1 else {}
        for p in parsed:
            if not isinstance(p, DomainError) and p[0].command_id not in answers:
                answers[p[0].command_id] = await self._one(p)
        return [p if isinstance(p, DomainError) else answers[p[0].command_id] for p in parsed]

    async def _sealed(self, parsed: list[Parsed | DomainError]) -> list[Parsed | DomainError]:
        """The submits with their personal fields sealed (suqiu.service.personal), in one claim of
        subject keys for all of them."""
        at = [i for i, p in enumerate(parsed) if not isinstance(p, DomainError) and isinstance(p.command, Submit)]
        if not at:
            return parsed
        sealed = await self._personal.seal([typing.cast(Parsed, parsed[i]).command for i in at], self._clock.now())
        out = list(parsed)
        for i, s in zip(at, sealed, strict=True):
            out[i] = typing.cast(Parsed, parsed[i])._replace(command=s.command, personal=s.personal)
        return out

    async def _one(self, parsed: Parsed) -> CommandResult | DomainError:
        """One command through the group commit; a refusal is its answer, a fault propagates."""
        req = parsed[0]
        started = time.perf_counter()
        try:
            result = await self._locked(parsed)
        except DomainError as exc:
            self._metrics.command(req.type, exc.code, started)
            return exc
        except Exception:
            self._metrics.command(req.type, "error", started)
            raise
        self._metrics.command(req.type, result.status, started)
        if result.status == "duplicate":
            # A retry after a lost answer: the command was stored, perhaps by a process since killed
            # before it could log, so this line is what shows the command was answered.
            log.info("command repeated", command_id=req.command_id, command_type=req.type, case_id=result.case_id)
        return result

    async def _locked(self, parsed: Parsed) -> CommandResult:
        req = parsed.req
        if req.case_id is None:
            return await self._execute(parsed)
        # Writers on one case in this process queue here instead of losing the optimistic race
        # against each other; the unique (case_id, seq) still arbitrates between processes.
        lock = self._locks.get(req.case_id)
        if lock is None:
            lock = self._locks[req.case_id] = asyncio.Lock()
        async with lock:
            return await self._execute(parsed)

    async def _execute(self, parsed: Parsed) -> CommandResult:
        # A submit is decided without reading the store first: a new case has no state to be stale,
        # and the unique constraints refuse a repeated command id or source reference, after which
        # the store is read and the original result answered. A round trip costs more CPU here than
        # deciding twice. A lifecycle command reads first: with several API processes the case as
        # this one last saw it is often stale (BENCHMARKS.md, measurements behind the code).
        req, command, request_hash, _ = parsed
        read_first = not isinstance(command, Submit)
        for attempt in range(RETRIES):
            start = await self._start(req, command, request_hash, read_first)
            if isinstance(start, CommandResult):
                return start
            case, last_hash = start
            related = await self._related(req, command)
            try:
                decided = self._decided(parsed, case, last_hash, self._clock.now(), self._context(), related)
            except DomainError:
                if not read_first:  # perhaps a repeat of a command stored before: ask the store
                    read_first = True
                    continue
                raise
            if isinstance(decided, CommandResult):
                return decided
            events, result, append = decided
            saved = await self._save(req, request_hash, case, events, result, append, attempt)
            if isinstance(saved, CommandResult):
                return saved
            read_first = read_first or saved is _Again.REPEAT
        raise DomainError("conflict", "the case is changing too fast; retry the command", case_id=req.case_id)

    async def _save(self, req: CommandRequest, request_hash: bytes, case: Case, events: list[Event],
                    result: CommandResult, append: store.Append, attempt: int) -> CommandResult | _Again:
        """Append the decided events: the command's result, or why it must be decided again."""
        try:
            await self._commits.append(append)
        except store.CaseConflict:
            self._cases.pop(case.case_id, None)
            if req.expected_seq is not None:
                # The seq clash may be reported before the command id's: a repeat is a repeat.
                prior = (await self._reads.read(store.Lookup(req.command_id))).prior
                if prior is not None:
                    return _duplicate(prior, request_hash, req.command_id)
                raise DomainError(
                    "conflict", f"expected_seq {req.expected_seq}: another command changed the case first",
                    expected_seq=req.expected_seq,
                ) from None
            log.info("append raced, retrying", command_id=req.command_id, case_id=case.case_id, attempt=attempt)
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
            return _Again.RACED
        except store.DuplicateCommand:
            return _Again.REPEAT  # the next round finds the earlier or concurrent writer's result
        for ev in events:
            case = evolve(case, ev)
        self._remember(case.case_id, case, append.encoded[-1].hash)
        # One line per command, not per event: an import of thousands of cases stays readable.
        log.info("command stored", command_id=req.command_id, command_type=req.type, case_id=case.case_id,
                 event_id=events[0].event_id, seq=events[-1].seq, events=[ev.event_type for ev in events])
        return result

    async def _start(self, req: CommandRequest, command: Any, request_hash: bytes, read_first: bool
                     ) -> CommandResult | tuple[Case, bytes]:
        """The case to decide on and its last hash, or the original result of a repeated command."""
        if isinstance(command, Submit):
            if read_first:
                found = await self._reads.read(store.Lookup(req.command_id, source=(command.source_system,
                                                                                    command.source_ref)))
                repeat = _repeat(found, request_hash, req.command_id)
                if repeat is not None:
                    return repeat
            return Case(case_id=self._new_id()), GENESIS
        assert req.case_id is not None
        case, last_hash = self._cached(req.case_id)
        found = await self._reads.read(store.Lookup(req.command_id, req.case_id, case.seq))
        repeat = _repeat(found, request_hash, req.command_id)
        if repeat is not None:
            return repeat
        return self._apply(case, last_hash, found.newer)

    async def close(self) -> None:
        await self._commits.close()

    async def _create(self, new: list[Parsed]) -> dict[str, CommandResult | DomainError]:
        """New cases in one transaction (a bulk load's group commit), answered by command id.

        Repeats answer their original result. If a concurrent writer takes one of the source
        references first, the chunk falls back to one command at a time.
        """
        lookups = [store.Lookup(p.req.command_id, source=(p.command.source_system, p.command.source_ref))
                   for p in new]
        async with self._pool.connection() as conn:
            found = await store.look_up(conn, lookups)
        results: dict[str, CommandResult | DomainError] = {}
        batch: list[store.Append] = []
        now = self._clock.now()
        ctx = self._context()
        for p, stored in zip(new, found, strict=True):
            req = p.req
            try:
                decided = _repeat(stored, p.request_hash, req.command_id) or self._decided(
                    p, Case(case_id=self._new_id()), GENESIS, now, ctx)
            except DomainError as exc:
                results[req.command_id] = exc
                continue
            if isinstance(decided, CommandResult):
                results[req.command_id] = decided
                continue
            _, results[req.command_id], append = decided
            batch.append(append)
        if batch:
            try:
                async with self._pool.connection() as conn:
                    await store.copy_many(conn, batch)
            except store.DuplicateCommand:
                log.info("bulk create raced with another writer; one command at a time", size=len(batch))
                return {p[0].command_id: await self._one(p) for p in new}
        outcomes = []
        for p in new:
            req = p.req
            answer = results[req.command_id]
            outcomes.append(answer.code if isinstance(answer, DomainError) else answer.status)
            self._metrics.command(req.type, outcomes[-1], None)
        # One line per batch: an import of a million cases is not a million lines.
        log.info("cases created in bulk", size=len(new), events=sum(len(a.encoded) for a in batch),
                 outcomes=dict(Counter(outcomes)))
        return results

    async def _related(self, req: CommandRequest, command: Any) -> Case | None:
        """The other case a command names (merge_into's main case), read fresh: decide sees it as
        it stands now, or None when it does not exist."""
        if not isinstance(command, MergeInto):
            return None
        cached, last = self._cached(command.main_case_id)
        found = await self._reads.read(store.Lookup(req.command_id, command.main_case_id, cached.seq))
        case, _ = self._apply(cached, last, found.newer)
        return case if case.seq else None

    def _decided(self, parsed: Parsed, case: Case, last_hash: bytes, now: datetime, ctx: Context,
                 related: Case | None = None) -> CommandResult | tuple[list[Event], CommandResult, store.Append]:
        """Decide one command on `case` (its last hash `last_hash`): "unchanged" when it changes
        nothing, else its events with the result it answers and the append that stores both. The
        one way every command goes, alone or with others (run)."""
        req, command, request_hash, personal = parsed
        events = decide(case, command, self._meta(req, command, case.case_id, now, personal, related), ctx)
        if not events:
            return CommandResult("unchanged", req.command_id, case.case_id, case.seq)
        result, append = self._prepare(req, command, request_hash, events, last_hash)
        return events, result, append

    def _meta(self, req: CommandRequest, command: Any, case_id: str, now: datetime,
              personal: Sealed | None, related: Case | None = None) -> CommandMeta:
        """What decide knows of the request beyond the command: who, when, which ids to use, a
        submit's personal fields as sealed, and the other case the command names."""
        return CommandMeta(
            command_id=req.command_id, case_id=case_id, actor=req.actor, issued_at=now,
            event_ids=tuple(self._new_id() for _ in range(_ids_for(command))), expected_seq=req.expected_seq,
            correlation_id=req.correlation_id, causation_id=req.causation_id, principal=req.principal,
            personal=personal, related=related,
        )

    def _encode(self, events: list[Event], prev: bytes) -> list[store.Encoded]:
        """Avro bytes for each event, chained on from `prev` (the case's last hash)."""
        encoded = []
        for ev in events:
            data, prev = self._codec.encode_event(ev, prev)
            encoded.append(store.Encoded(ev, data, prev))
        return encoded

    def _prepare(self, req: CommandRequest, command: Any, request_hash: bytes, events: list[Event],
                 prev: bytes) -> tuple[CommandResult, store.Append]:
        """The decided events encoded, the result the command answers, and the append that
        stores both (with a submit's source)."""
        encoded = self._encode(events, prev)
        is_submit = isinstance(command, Submit)
        result = CommandResult("created" if is_submit else "accepted", req.command_id, events[0].case_id,
                               events[-1].seq, tuple(ev.event_id for ev in events))
        source = (command.source_system, command.source_ref) if is_submit else None
        return result, store.Append(encoded, req.command_id, request_hash, result.as_dict(), source)

    async def load(self, case_id: str) -> Case:
        case, last = self._cached(case_id)
        async with self._pool.connection() as conn:
            newer = await store.read_case(conn, case_id, case.seq)
        return self._apply(case, last, newer)[0]

    def _cached(self, case_id: str) -> tuple[Case, bytes]:
        cached = self._cases.get(case_id)
        return cached if cached is not None else (Case(case_id=case_id), GENESIS)

    def _apply(self, case: Case, last: bytes, newer: list[bytes]) -> tuple[Case, bytes]:
        """Bring a (possibly cached) case up to date with events read after it."""
        for data in newer:
            case = evolve(case, self._codec.decode_event(data))
            last = stored_hash(data)
        if newer:
            self._remember(case.case_id, case, last)
        return case, last

    def _remember(self, case_id: str, case: Case, last: bytes) -> None:
        self._cases[case_id] = (case, last)
        self._cases.move_to_end(case_id)
        if len(self._cases) > CACHE_SIZE:
            self._cases.popitem(last=False)


def _request_hash(req: CommandRequest, command: Any) -> bytes:
    canonical = _CANONICAL.encode(
        {"type": req.type, "case_id": req.case_id, "actor": plain(req.actor),
         "command": {k: plain(v) for k, v in hashed_fields(command).items()}})
    return hashlib.sha256(canonical.encode()).digest()


def _ids_for(command: Any) -> int:
    """How many event ids a command may need: an import records a whole case's history at once
    (submitted, dispatched, accepted, breached, replied, closed)."""
    return 6 if isinstance(command, ImportCase) else 2


def _canonical(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


# The canonical form stored hashes were made with: these options must never change.
# One encoder for all calls (json.dumps would build one per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=_canonical)


def _repeat(found: store.Found, request_hash: bytes, command_id: str) -> CommandResult | None:
    """The original result when the store already holds this command (by its id, or a submit
    by its source reference); None for a new command."""
    if found.prior is not None:
        return _duplicate(found.prior, request_hash, command_id)
    if found.original is not None:
        return _as_duplicate(found.original)
    return None


def _duplicate(prior: tuple[bytes, dict[str, Any]], request_hash: bytes, command_id: str) -> CommandResult:
    if prior[0] != request_hash:
        raise DomainError(
            "idempotency_mismatch", f"command_id {command_id} was already used for a different command",
            field="command_id", rule="a command_id names exactly one command",
        )
    return _as_duplicate(prior[1])


def _as_duplicate(original: dict[str, Any]) -> CommandResult:
    return CommandResult("duplicate", original["command_id"], original["case_id"], original["seq"],
                         tuple(original["event_ids"]))
