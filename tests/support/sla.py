"""Helpers for the SLA and read-model tests: wait on the store and the read models, never on business time."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from rich.console import Console

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.base.policy import policy_document
from suqiu.cli.main import build_parser
from suqiu.domain.model import Actor, Role
from suqiu.replay import cli as replay_cli
from suqiu.schemas.codec import GENESIS, Codec, chain_hash, stored_hash, unhashed_body
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime

T = TypeVar("T")
CST = timedelta(hours=8)
CODEC = Codec()


def cst(*args: int) -> datetime:
    """An instant given as Tianjin wall-clock time (year, month, day, hour, minute)."""
    return datetime(*args, tzinfo=UTC) - CST


def query(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []  # a statement without rows (committed on exit)


async def eventually(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 20.0) -> T:
    """Poll `probe` (real time, a few ms per step) until `ok`; the last value on timeout, for the assert."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = probe()
    while not ok(value) and loop.time() < deadline:
        await asyncio.sleep(0.05)
        value = probe()
    return value


async def eventually_async(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 20.0) -> T:
    """`eventually` for a probe that must be awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = await probe()
    while not ok(value) and loop.time() < deadline:
        await asyncio.sleep(0.1)
        value = await probe()
    return value


def sla_events(settings: Settings, case_id: str) -> list[tuple[str, str]]:
    """(event_type, clock) of the case's SLA events, in order, from the store."""
    rows = query(settings, "SELECT event_type, data FROM events WHERE case_id = %s AND event_type IN "
                 "('SlaWarning', 'SlaBreached', 'SupervisionOpened') ORDER BY seq", case_id)
    return [(r[0], CODEC.decode_event(bytes(r[1])).payload.clock) for r in rows]


def view_seq(settings: Settings, case_id: str) -> int:
    rows = query(settings, "SELECT seq FROM case_view WHERE case_id = %s", case_id)
    return int(rows[0][0]) if rows else 0


def store_seq(settings: Settings, case_id: str) -> int:
    rows = query(settings, "SELECT max(seq) FROM events WHERE case_id = %s", case_id)
    return int(rows[0][0] or 0)


async def caught_up(settings: Settings, case_id: str, timeout: float = 20.0) -> int:
    """Wait until the read model reflects every stored event of the case."""
    seq = await eventually(lambda: (view_seq(settings, case_id), store_seq(settings, case_id)),
                           lambda v: v[0] == v[1] and v[0] > 0, timeout)
    assert seq[0] == seq[1], f"read model at seq {seq[0]}, store at {seq[1]}"
    return seq[0]


async def settled(settings: Settings, clock: ManualClock, cases: list[str]) -> None:
    """Wait until the timers owe nothing at the clock's time and the read models hold every event
    of `cases`: nothing is left to fire or to project, so a rebuild can be compared."""
    for _ in range(200):
        stored = query(settings, "SELECT count(*) FROM events")[0][0]
        for case in cases:
            await caught_up(settings, case)
        due = query(settings, "SELECT count(*) FROM sla_timers WHERE fire_at <= %s", clock.now())[0][0]
        if due == 0 and query(settings, "SELECT count(*) FROM events")[0][0] == stored:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the timers and the read models did not settle")


def knowing_2027(settings: Settings, directory: Path) -> Settings:
    """`settings` with the shipped policy plus a 2027 override file, as an operator would add it:
    official through 2027, so provisional days reach 2032 (one year more than the shipped policy)."""
    (directory / "cal-2027.toml").write_text('holidays = ["2027-01-01"]\nworkdays = []\n', "utf-8")
    (directory / "policy.toml").write_text(
        policy_document().replace('version = "default-1"', 'version = "with-2027"')
                         .replace('# override_file = "calendar-2027.toml"', 'override_file = "cal-2027.toml"'),
        "utf-8")
    return settings.with_(sla_policy=str(directory / "policy.toml"))


async def dispatched_into_2032(settings: Settings, clock: ManualClock) -> str:
    """A case submitted and dispatched through `settings`' policy on Monday 2031-12-29 10:00 in
    Tianjin, so its five working days reach 2032: past the shipped policy's provisional horizon,
    within that of a policy knowing 2027. Returns its id."""
    from tests.conftest import SYSTEM, submission

    clock.set(cst(2031, 12, 29, 10, 0))
    body = submission()
    body.pop("command_id")
    rt = await Runtime(settings, clock=clock).open()
    try:
        case = (await rt.service.execute(
            CommandRequest("submit", str(uuid.uuid4()), Actor(SYSTEM, Role.INTAKE), body))).case_id
        await rt.service.execute(CommandRequest("dispatch", str(uuid.uuid4()), Actor(SYSTEM, Role.DISPATCHER),
                                                {"department": "bh-market"}, case_id=case))
    finally:
        await rt.close()
    return case


def snapshot(s: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every read model's rows (case_view without its update time), for comparing a rebuild with the live ones."""
    tables = {"case_view": "updated_at", "case_timeline": "", "sla_timers": "", "assignments": "", "closures": "",
              "replies": "", "department_days": "", "handling_months": ""}
    out = {}
    for table, skip in tables.items():
        cols = [r[0] for r in query(s, "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                       "AND table_schema = current_schema() ORDER BY ordinal_position", table)]
        keep = ", ".join(c for c in cols if c != skip)
        out[table] = query(s, f"SELECT {keep} FROM {table} ORDER BY 1, 2, 3")
    return out


async def replay(settings: Settings, *argv: str) -> tuple[int, str]:
    """The CLI as an auditor runs it, in a thread: it starts event loops of its own."""
    return await asyncio.to_thread(replay_sync, settings, *argv)


def replay_sync(settings: Settings, *argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = replay_cli.run(build_parser().parse_args(["replay", *argv]), settings,
                          Console(file=buf, width=200, highlight=False))
    return code, buf.getvalue()


def chain_ok(settings: Settings, case_id: str) -> bool:
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT seq, data, hash FROM events WHERE case_id = %s ORDER BY seq", (case_id,)).fetchall()
    prev = GENESIS
    for i, (seq, data, h) in enumerate(rows, start=1):
        if seq != i or chain_hash(prev, unhashed_body(bytes(data))) != bytes(h) or stored_hash(bytes(data)) != bytes(h):
            return False
        prev = bytes(h)
    return True


def submit_body() -> dict[str, Any]:
    from tests.conftest import submission

    body = submission()
    body.pop("command_id")
    return body
