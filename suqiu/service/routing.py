"""智能分拨 as a service: train a model on the store's history, and suggest for each new appeal.

Training (`suqiu classify train`) labels each answered case with its category and the department
that replied (through today's merge chain), holds out the newest cases, and stores the model; it
becomes active only when it is no worse than the active one on the same held-out cases.

Suggesting (the routing agent) scores each live AppealSubmitted and records RoutingSuggested on
the case through the command path, with the open cases that look like the same problem.
"""

from __future__ import annotations

import asyncio
import hashlib
import typing
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from suqiu.base.sealing import MasterKey
from suqiu.base.textmodel import TextModel, fit
from suqiu.domain import DomainError
from suqiu.domain import events as e
from suqiu.domain import routing as r
from suqiu.domain.model import Actor, Role
from suqiu.domain.refdata import Context
from suqiu.schemas.codec import Codec
from suqiu.service.commands import CommandRequest, CommandResult, CommandService
from suqiu.store import reference
from suqiu.store import routing as store

log = structlog.get_logger(__name__)
NAMESPACE = uuid.UUID("0c8d6a3e-5b7f-4e21-9d4a-6f2b8e1c3a95")
RETRIES = 3
SHINGLE_CACHE = 100_000  # cases whose shingles a worker keeps (about 30 MiB)
CANDIDATES = 200  # open cases a new one is compared with: the newest


class TooLittleHistory(Exception):
    """Not enough answered cases to learn from; the message says how many there are."""


class TrainingBusy(Exception):
    """Another process is training now (one training at a time per deployment)."""


@dataclass(frozen=True)
class Trained:
    """A training run: the stored model, and the classes left out as too rare to learn."""

    info: store.ModelInfo
    rare: dict[str, list[str]] = field(default_factory=dict)


def signed_part(version: str, model: bytes) -> bytes:
    """What a model's signature covers: its version and its arrays."""
    return version.encode() + b"\n" + hashlib.sha256(model).digest()


def auto_dispatch_command_id(case_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "auto-dispatch:" + case_id))


def suggestion_command_id(case_id: str) -> str:
    """One suggestion per case: a redelivered appeal asks again under the same command id."""
    return str(uuid.uuid5(NAMESPACE, "routing:" + case_id))


async def train(pool: AsyncConnectionPool[Any], context: Context, master: MasterKey, now: datetime) -> Trained:
    """Fit, judge on the newest cases, and store a model (active when no worse than the active one);
    one training at a time per deployment (TrainingBusy otherwise)."""
    async with pool.connection() as lock:
        if not await store.try_training_lock(lock):
            raise TrainingBusy("another process is training a routing model now")
        try:
            return await _train(pool, context, master, now)
        finally:
            await store.training_unlock(lock)


async def retrain_if_due(pool: AsyncConnectionPool[Any], context: Context, master: MasterKey, now: datetime,
                         every: timedelta) -> Trained | None:
    """Train when the newest model is at least `every` old (or there is none): the schedule lives
    in the store, so workers that restart more often than `every` still retrain on time."""
    async with pool.connection() as conn:
        found = await store.models(conn)
    if found and now - found[0].trained_at < every:
        return None
    return await train(pool, context, master, now)


async def _train(pool: AsyncConnectionPool[Any], context: Context, master: MasterKey, now: datetime) -> Trained:
    async with pool.connection() as conn:
        history = await store.labelled(conn)
        org_version = await reference.version_async(conn)
    rows, rare = _labelled(history, context)
    if len(rows) < r.MIN_CASES:
        raise TooLittleHistory(
            f"too little history to train: {len(rows)} answered cases with a category and department in use "
            f"(seen at least {r.MIN_PER_CLASS} times each); {r.MIN_CASES} needed")
    for head in r.HEADS:
        if len({row[head] for row in rows}) < 2:
            raise TooLittleHistory(f"too little history to train: every answered case has one {head}")
    cut = int(len(rows) * (1 - r.HELD_OUT))
    learn, held = rows[:cut], rows[cut:]
    texts = [row["text"] for row in held]
    model = await asyncio.to_thread(fit, [row["text"] for row in learn],
                                    {head: [row[head] for row in learn] for head in r.HEADS})
    metrics: dict[str, Any] = {}
    for head in r.HEADS:
        labels = [row[head] for row in held]
        metrics[head] = (await asyncio.to_thread(model.evaluate, head, texts, labels)).as_dict()
        await asyncio.to_thread(model.calibrate, head, texts, labels)
    active, decision = await _judged(pool, master, metrics, held)
    data = await asyncio.to_thread(model.to_bytes)
    version = f"{now:%Y%m%dT%H%M%SZ}-{hashlib.sha256(data).hexdigest()[:8]}"
    info = store.ModelInfo(version, now, learn[0]["at"], learn[-1]["at"], org_version, len(learn),
                           {**metrics, "held_out": len(held)}, active, decision)
    async with pool.connection() as conn:
        await store.save(conn, info, data, master.signature(signed_part(version, data)))
    log.info("routing model trained", version=version, active=active, decision=decision, cases=len(learn),
             held_out=len(held), **{f"{h}_macro_f1": metrics[h]["macro_f1"] for h in r.HEADS})
    return Trained(info, rare)


def _labelled(history: Sequence[store.Labelled], context: Context) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The cases a model may learn from, each labelled as the organisation stands today, and the
    classes too rare to learn (their cases are left out)."""
    rows: list[dict[str, Any]] = []
    for h in history:
        department = r.label_department(context.departments, h.department)
        category = r.label_category(context.categories, h.category)
        if department is not None and category is not None:
            rows.append({"text": h.text, "at": h.submitted_at, "category": category, "department": department})
    rare: dict[str, list[str]] = {}
    for head in r.HEADS:
        counts: Counter[str] = Counter(row[head] for row in rows)
        rare[head] = sorted(c for c, n in counts.items() if n < r.MIN_PER_CLASS)
    kept = [row for row in rows if all(row[head] not in rare[head] for head in r.HEADS)]
    return kept, {head: found for head, found in rare.items() if found}


async def _judged(pool: AsyncConnectionPool[Any], master: MasterKey, metrics: dict[str, Any],
                  held: Sequence[dict[str, Any]]) -> tuple[bool, str]:
    """Whether the new model replaces the active one, and why; the active one's figures on the
    same held-out cases go into `metrics` under `active_model`."""
    async with pool.connection() as conn:
        version = await store.active_version(conn)
        found = None if version is None else await store.load(conn, version)
    if found is None:
        return True, "first model"
    old = _opened(master, *found)
    if old is None:
        return True, f"the active model {found[0].version} does not verify: replaced"
    texts = [row["text"] for row in held]
    figures = {head: (await asyncio.to_thread(old.evaluate, head, texts, [row[head] for row in held])).as_dict()
               for head in r.HEADS}
    metrics["active_model"] = {"version": found[0].version, **{h: _headline(figures[h]) for h in r.HEADS}}
    worse = r.worse_than_active(metrics, figures)
    if worse:
        return False, f"kept {found[0].version}: worse on the same held-out cases ({'; '.join(worse)})"
    return True, f"replaced {found[0].version}: no worse on the same held-out cases"


def _headline(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: figures[k] for k in r.FIGURES}


def _opened(master: MasterKey, info: store.ModelInfo, data: bytes, signature: bytes) -> TextModel | None:
    """The stored model, or None (logged) when its signature or its arrays do not hold."""
    if not master.verified(signed_part(info.version, data), signature):
        log.error("routing model refused: its signature does not verify (changed in the database?)",
                  version=info.version)
        return None
    try:
        return TextModel.from_bytes(data)
    except ValueError as exc:
        log.error("routing model refused: its arrays do not load", version=info.version, error=str(exc))
        return None


class Router:
    """Scores new appeals with the active model and records the suggestions (the routing agent's work)."""

    def __init__(self, pool: AsyncConnectionPool[Any], service: CommandService, codec: Codec,
                 context: Callable[[], Context], master: MasterKey, system_id: str,
                 auto_dispatch: Mapping[str, float] | None = None) -> None:
        self.pool, self.service, self.codec, self.context, self.master = pool, service, codec, context, master
        self.auto_dispatch = dict(auto_dispatch or {})
        # A case's text never changes: its shingles are computed once, not for every newcomer it is
        # compared with (an enterprise's open cases, a jurisdiction's week).
        self._shingles: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.actor = Actor(system_id, Role.SYSTEM, person="routing")
        self._model: tuple[str, TextModel | None] | None = None

    async def handle(self, values: Iterable[bytes | None]) -> None:
        """A batch from the events topic. A suggestion is advice: when the store fails three times
        the batch's appeals go without one, named in the log, and the topic moves on."""
        events = []
        for value in values:
            try:
                events.append(self.codec.decode_event(value or b""))
            except ValueError:
                continue  # the read-models agent dead-letters it
        for attempt in range(RETRIES):
            try:
                await self.suggest(events)
                return
            except (psycopg.Error, PoolTimeout, OSError):
                if attempt == RETRIES - 1:
                    log.error("routing suggestions not recorded: the store failed", exc_info=True,
                              cases=[ev.case_id for ev in events if isinstance(ev.payload, e.AppealSubmitted)])
                    return
                await asyncio.sleep(2 ** attempt)

    async def model(self) -> tuple[str, TextModel] | None:
        """The active model, loaded once per version; a refused one is not tried again."""
        async with self.pool.connection() as conn:
            version = await store.active_version(conn)
            if version is None:
                return None
            if self._model is None or self._model[0] != version:
                found = await store.load(conn, version)
                opened = None if found is None else await asyncio.to_thread(_opened, self.master, *found)
                self._model = (version, opened)
                if opened is not None:
                    log.info("routing model loaded", version=version)
        return None if self._model[1] is None else (self._model[0], self._model[1])

    async def _nearby(self, live: Sequence[e.Event], texts: Sequence[str]) -> list[list[str]]:
        """Per new case, the open cases it may duplicate, with every shingle set at hand in the
        cache: the batch's own first, then those read from the store."""
        new = []
        for ev, text in zip(live, texts, strict=True):
            self._remember(ev.case_id, r.shingles(text))
            p = typing.cast(e.AppealSubmitted, ev.payload)
            new.append((ev.case_id, p.enterprise.uscc, p.jurisdiction, ev.occurred_at - r.DUPLICATE_WINDOW))
        async with self.pool.connection() as conn:
            nearby = await store.open_like(conn, new, CANDIDATES)
            missing = {c for ids in nearby for c in ids if c not in self._shingles}
            found = await store.texts(conn, sorted(missing)) if missing else {}
        for case_id, text in found.items():
            self._remember(case_id, r.shingles(text))
        return [[c for c in ids if c in self._shingles] for ids in nearby]

    def _remember(self, case_id: str, shingles: frozenset[str]) -> None:
        self._shingles[case_id] = shingles
        self._shingles.move_to_end(case_id)
        if len(self._shingles) > SHINGLE_CACHE:
            self._shingles.popitem(last=False)

    async def _run(self, reqs: Sequence[CommandRequest]) -> list[CommandResult | DomainError]:
        """The commands side by side, so the group commit stores many in one round trip."""
        return [a[0] for a in await asyncio.gather(*(self.service.run([req]) for req in reqs))]

    async def suggest(self, events: Sequence[e.Event]) -> list[CommandResult | DomainError]:
        """Record a suggestion on each live new appeal among `events` (imported history is not scored)."""
        live = [ev for ev in events if isinstance(ev.payload, e.AppealSubmitted) and ev.seq == 1
                and ev.actor.person != r.HISTORY_IMPORT]
        if not live:
            return []
        found = await self.model()
        if found is None:
            return []  # 智能分拨 starts with the first model (suqiu classify train)
        version, model = found
        texts = [_text(ev) for ev in live]
        ranked = await asyncio.to_thread(model.ranked_all, texts)
        ctx = self.context()
        nearby = await self._nearby(live, texts)
        reqs, dispatches = [], []
        for i, ev in enumerate(live):
            p = ev.payload
            assert isinstance(p, e.AppealSubmitted)
            categories = r.suggestable_categories(ctx.categories, (r.Scored(c, s) for c, s in ranked["category"][i]))
            departments = r.suggestable_departments(ctx.departments,
                                                    (r.Scored(c, s) for c, s in ranked["department"][i]))
            reqs.append(CommandRequest("record_routing_suggestion", suggestion_command_id(ev.case_id), self.actor, {
                "model": version,
                "categories": [{"code": s.code, "score": s.score} for s in categories],
                "departments": [{"code": s.code, "score": s.score} for s in departments],
                "duplicates": [{"case_id": d.case_id, "similarity": d.similarity} for d in r.duplicates_of(
                    self._shingles[ev.case_id], ((c, self._shingles[c]) for c in nearby[i]))],
            }, case_id=ev.case_id, causation_id=ev.event_id, correlation_id=ev.correlation_id))
            target = r.auto_dispatch_to(p.category, departments, self.auto_dispatch)
            if target is not None:
                dispatches.append(CommandRequest("dispatch", auto_dispatch_command_id(ev.case_id), self.actor, {
                    "department": target, "note": f"智能分拨自动派单：模型 {version}，得分 {departments[0].score:.2f}"},
                    case_id=ev.case_id, causation_id=ev.event_id, correlation_id=ev.correlation_id))
        answers = await self._run(reqs)
        for req, answer in zip(reqs, answers, strict=True):
            if isinstance(answer, DomainError):
                # Usually a dispatcher was quicker than the agent: the case is dispatched already.
                log.info("routing suggestion not recorded", case_id=req.case_id, command_id=req.command_id,
                         code=answer.code, reason=answer.message)
        if dispatches:
            # After the suggestion, so the history reads suggestion, then the dispatch it caused.
            for req, answer in zip(dispatches, await self._run(dispatches), strict=True):
                if isinstance(answer, DomainError):
                    log.info("auto-dispatch not done", case_id=req.case_id, command_id=req.command_id,
                             code=answer.code, reason=answer.message)
        return answers


def _text(ev: e.Event) -> str:
    p = ev.payload
    assert isinstance(p, e.AppealSubmitted)
    return p.title + "\n" + p.content
