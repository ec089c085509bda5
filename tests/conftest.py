"""One real broker and one real PostgreSQL per session; each test gets its own schema and topic prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import psycopg
import pytest
import structlog
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, async_playwright

from suqiu.base import logs
from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.base.sealing import MasterKey
from suqiu.cli.main import main
from suqiu.domain.model import Role
from suqiu.http.api import create_app
from suqiu.http.server import ApiRunner, broker_probe
from suqiu.service.runtime import Runtime
from suqiu.stack.embedded import EmbeddedBroker, EmbeddedPostgres
from suqiu.store import reference
from suqiu.store.keys import create_key
from suqiu.store.migrate import migrate
from suqiu.streams.topics import ensure_topics
from tests.support.board import CHROMIUM, FLAGS

logs.configure("WARNING")
SYSTEM = "tj-binhai"
# A Tuesday 10:00 in Tianjin: clocks in tests start inside working hours.
T0 = datetime(2026, 7, 21, 2, 0, tzinfo=UTC)
ENTERPRISE_USCC = "91110000600037341L"
OTHER_USCC = "91120116MA05JQ2X9U"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "data", durable=False)
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session", autouse=True)
def master_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One master key for the session's deployments (each test still has its own subject keys),
    also in the environment for the CLI run in-process as an operator runs it."""
    path = Path(tmp_path_factory.mktemp("secrets")) / "master.key"
    MasterKey.write_new(path)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SUQIU_MASTER_KEY_FILE", str(path))
        yield str(path)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker()
    b.start()
    yield b
    b.stop()


def schema_dsn(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"


def new_schema(postgres: EmbeddedPostgres, prefix: str = "t") -> tuple[str, str]:
    """A fresh schema, migrated and seeded: one deployment's database. Returns (schema, dsn)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = schema_dsn(postgres.dsn, schema)
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        reference.seed(conn)
    return schema, dsn


@pytest.fixture
def settings(postgres: EmbeddedPostgres, broker: EmbeddedBroker, master_key_file: str) -> Settings:
    schema, dsn = new_schema(postgres)
    s = Settings(kafka_bootstrap=broker.bootstrap, database_url=dsn, system_id=SYSTEM,
                 topic_prefix=f"{schema}.", partitions=3, master_key_file=master_key_file)
    return s


@pytest.fixture
async def topics(settings: Settings) -> Settings:
    await ensure_topics(settings)
    return settings


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def runtime(settings: Settings, clock: ManualClock) -> AsyncIterator[Runtime]:
    rt = await Runtime(settings, clock=clock).open()
    yield rt
    await rt.close()


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    assert settings.database_url
    out = {}
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for role in (Role.INTAKE, Role.DISPATCHER, Role.AUDITOR, Role.ADMIN, Role.SYSTEM):
            out[role.value] = create_key(conn, SYSTEM, role)
        # Speaks for the enterprise of submission(); another enterprise's cases are not there for it.
        out["enterprise"] = create_key(conn, SYSTEM, Role.ENTERPRISE, usccs=(ENTERPRISE_USCC,))
        out["other-enterprise"] = create_key(conn, SYSTEM, Role.ENTERPRISE, usccs=(OTHER_USCC,))
        out["hotline-intake"] = create_key(conn, SYSTEM, Role.INTAKE, source_systems=("hotline-12345",))
        for dept in ("bh-market", "bh-planning", "bh-hrss", "bh-approval"):
            out[dept] = create_key(conn, SYSTEM, Role.DEPARTMENT, dept)
    return out


class Api:
    """A thin HTTP client over the real server: call(role, method, path, body) -> (status, json)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, keys: dict[str, str]) -> None:
        self.session, self.base, self.keys = session, base, keys

    async def call(self, who: str | None, method: str, path: str, body: Any = None, *,
                   raw: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.keys.get(who, who)}"} if who else {}
        kwargs: dict[str, Any] = {"data": raw, "headers": {**headers, "Content-Type": "application/json"}} \
            if raw is not None else {"json": body, "headers": headers}
        async with self.session.request(method, f"{self.base}/v1{path}", **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def submit(self, who: str = "intake", **overrides: Any) -> dict[str, Any]:
        status, body = await self.call(who, "POST", "/appeals", submission(**overrides))
        assert status == 201, body
        return dict(body)

    async def do(self, who: str, case_id: str, type_name: str, **fields: Any) -> tuple[int, Any]:
        body = {"type": type_name, "command_id": fields.pop("command_id", str(uuid.uuid4())), **fields}
        return await self.call(who, "POST", f"/appeals/{case_id}/commands", body)

    async def ok(self, who: str, case_id: str, type_name: str, **fields: Any) -> dict[str, Any]:
        status, body = await self.do(who, case_id, type_name, **fields)
        assert status == 200, (type_name, body)
        return dict(body)


def submission(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "command_id": str(uuid.uuid4()), "source_system": "hotline-12345",
        "source_ref": f"TJ12345-{uuid.uuid4().hex[:10]}",
        "enterprise": {"uscc": ENTERPRISE_USCC, "name": "天津某某科技有限公司", "contact_name": "李明",
                       "contact_phone": "13800000000"},
        "channel": "symposium", "category": "approval", "priority": "normal", "jurisdiction": "tj-binhai",
        "title": "施工许可审批进度", "content": "二期厂房施工许可已提交三周，希望了解进度。",
    }
    body.update(overrides)
    return body


class ApiTestServer(TestServer):
    """aiohttp's test server on the API's own runner (its parser's refusals in the error contract)."""

    async def _make_runner(self, **kwargs: Any) -> ApiRunner:
        return ApiRunner(self.app, **kwargs)


@pytest.fixture
async def api(runtime: Runtime, keys: dict[str, str], settings: Settings) -> AsyncIterator[Api]:
    assert settings.kafka_bootstrap
    server = ApiTestServer(create_app(runtime, broker_probe(settings.kafka_bootstrap, settings.kafka_security)))
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Api(session, str(server.make_url("")).rstrip("/"), keys)
    await server.close()


def run_cli(argv: list[str]) -> int:
    """`suqiu …` in-process; it configures logging for itself, so the session's setup is put back."""
    saved = structlog.get_config()
    try:
        return main(argv)
    finally:
        structlog.configure(**saved)


def count_rows(settings: Settings, table: str) -> int:
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def stored(settings: Settings) -> dict[str, int]:
    """Row counts of everything a command could write: proof that a refusal stored nothing."""
    return {t: count_rows(settings, t) for t in ("events", "commands", "source_refs", "outbox")}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium for the board's pages (tests.support.board)."""
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        await b.close()
