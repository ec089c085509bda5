"""Access control: keys per system and role, department scoping on reads, auditors read-only, no secret in logs."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from suqiu.config import Settings
from suqiu.runtime import Runtime
from tests.conftest import Api, run_cli, stored
from tests.sla_helpers import caught_up, query


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings,
        *argv: str) -> tuple[int, str, str]:
    assert settings.database_url
    monkeypatch.setenv("SUQIU_DATABASE_URL", settings.database_url)
    code = run_cli(["--log-level", "WARNING", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_keys_create_list_revoke(settings: Settings, runtime: Runtime, api: Api,
                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(monkeypatch, capsys, settings, "keys", "create", "--role", "department",
                         "--department", "bh-eco", "--label", "生态环境局业务系统")
    assert code == 0 and "only its SHA-256 is kept" in err
    secret = out.strip()
    status, body = await api.call(secret, "GET", "/departments/bh-eco/load")
    assert status == 200, body
    code, out, _ = cli(monkeypatch, capsys, settings, "keys", "list")
    assert code == 0 and secret[:12] in out and secret not in out and "生态环境局业务系统" in out
    assert cli(monkeypatch, capsys, settings, "keys", "create", "--role", "department")[0] == 2
    assert cli(monkeypatch, capsys, settings, "keys", "create", "--role", "department", "--department", "nope")[0] == 2
    assert cli(monkeypatch, capsys, settings, "keys", "create", "--role", "auditor", "--department", "bh-eco")[0] == 2
    code, out, _ = cli(monkeypatch, capsys, settings, "keys", "create", "--role", "intake", "--label", "12345")
    fresh = out.strip()
    assert cli(monkeypatch, capsys, settings, "keys", "revoke", fresh[:12])[0] == 0
    assert cli(monkeypatch, capsys, settings, "keys", "revoke", fresh[:12])[0] == 1
    with capture_logs() as logs:
        status, body = await api.call(fresh, "GET", "/appeals")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert any(e.get("key_prefix") == fresh[:12] for e in logs), logs
    assert fresh not in repr(logs)


async def test_departments_read_only_their_cases_and_figures(topics: Settings, runtime: Runtime, api: Api) -> None:
    mine = (await api.submit())["case_id"]
    theirs = (await api.submit())["case_id"]
    await api.ok("dispatcher", mine, "dispatch", department="bh-market")
    await api.ok("dispatcher", theirs, "dispatch", department="bh-hrss")
    for path in (f"/appeals/{mine}", f"/appeals/{mine}/history", "/departments/bh-market/load"):
        status, body = await api.call("bh-market", "GET", path)
        assert status == 200, (path, body)
    for path in (f"/appeals/{theirs}", f"/appeals/{theirs}/history", "/departments/bh-hrss/load",
                 "/appeals?department=bh-hrss", "/jurisdictions/tj-binhai/kpis"):
        status, body = await api.call("bh-market", "GET", path)
        assert status == 403 and body["error"]["details"]["rule"] == "department scoping: reads too", (path, body)
    for who in ("dispatcher", "auditor"):
        status, _ = await api.call(who, "GET", f"/appeals/{theirs}/history")
        assert status == 200


async def test_a_department_keeps_reading_a_case_it_transferred(topics: Settings, runtime: Runtime, api: Api) -> None:
    from tests.kafka_helpers import faust_worker

    async with faust_worker(topics, runtime.clock):
        case = (await api.submit())["case_id"]
        await api.ok("dispatcher", case, "dispatch", department="bh-market")
        await api.ok("dispatcher", case, "transfer", department="bh-hrss", reason="职责调整")
        await caught_up(topics, case)
        status, _ = await api.call("bh-market", "GET", f"/appeals/{case}/history")
        assert status == 200
        status, page = await api.call("bh-market", "GET", "/appeals")
        assert status == 200 and page["appeals"] == []  # the list shows what it holds now


async def test_auditors_are_read_only_and_no_secret_reaches_the_events(settings: Settings, runtime: Runtime,
                                                                        api: Api) -> None:
    case = (await api.submit())["case_id"]
    before = stored(settings)
    status, body = await api.do("auditor", case, "urge", note="x")
    assert status == 403 and body["error"]["details"]["rule"] == "auditor read-only"
    assert stored(settings) == before
    status, _ = await api.call("auditor", "GET", f"/appeals/{case}/history")
    assert status == 200
    data = b"".join(bytes(r[0]) for r in query(settings, "SELECT data FROM events"))
    assert all(k.encode() not in data for k in api.keys.values())
