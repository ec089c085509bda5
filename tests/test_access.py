"""Access control: keys per system and role, department scoping on reads, auditors read-only, no secret in logs."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from suqiu.base.config import Settings
from suqiu.service.runtime import Runtime
from tests.conftest import ENTERPRISE_USCC, OTHER_USCC, Api, run_cli, stored, submission
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, query


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
    assert out.splitlines()[0].split()[:4] == ["prefix", "system", "role", "department"]
    assert cli(monkeypatch, capsys, settings, "keys", "create", "--role", "department")[0] == 2
    assert cli(monkeypatch, capsys, settings, "keys", "create", "--role", "department", "--department", "nope")[0] == 2
    assert cli(monkeypatch, capsys, settings, "keys", "create", "--role", "auditor", "--department", "bh-eco")[0] == 2
    # A binding no submission could carry, a label past its length: refused, naming the option.
    code, _, err = cli(monkeypatch, capsys, settings, "keys", "create", "--role", "intake", "--source-system", "x" * 65)
    assert code == 2 and "--source-system: longer than 64 characters" in err
    code, _, err = cli(monkeypatch, capsys, settings, "keys", "create", "--role", "auditor", "--label", "a\x07b")
    assert code == 2 and "--label: " in err
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
    from tests.support.kafka import faust_worker

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


async def test_an_enterprise_key_reads_and_acts_only_on_its_own_enterprises_cases(
        topics: Settings, runtime: Runtime, api: Api) -> None:
    settings = topics
    mine = (await api.submit())["case_id"]
    theirs = (await api.submit(enterprise={"uscc": OTHER_USCC, "name": "另一家公司"}))["case_id"]
    async with faust_worker(settings, runtime.clock):
        for case in (mine, theirs):
            await api.ok("dispatcher", case, "dispatch", department="bh-market")
            await caught_up(settings, case)
    status, body = await api.call("enterprise", "GET", f"/appeals/{mine}")
    assert status == 200 and body["enterprise"]["contact_phone"] == "13800000000"
    status, body = await api.call("enterprise", "GET", "/appeals")
    assert status == 200 and [a["case_id"] for a in body["appeals"]] == [mine]
    before = stored(settings)
    # Another enterprise's case is not there for this key: 404 as for any unknown id, no hint.
    for path in (f"/appeals/{theirs}", f"/appeals/{theirs}/history"):
        status, body = await api.call("enterprise", "GET", path)
        assert status == 404 and body["error"]["code"] == "not_found", (path, body)
        assert (await api.call("enterprise", "GET", path.replace(theirs, "no-such-case")))[1] == \
            {**body, "error": {**body["error"], "message": body["error"]["message"].replace(theirs, "no-such-case"),
                               "details": {"case_id": "no-such-case"}}}
    for type_name, fields in (("withdraw", {"reason": "x"}), ("supply_materials", {}),
                              ("feedback", {"rating": "satisfied"})):
        status, body = await api.do("enterprise", theirs, type_name, **fields)
        assert status == 404 and body["error"]["code"] == "not_found", (type_name, body)
    assert stored(settings) == before
    await api.ok("enterprise", mine, "withdraw", reason="已自行解决")
    status, body = await api.call("other-enterprise", "GET", "/appeals")
    assert status == 200 and [a["case_id"] for a in body["appeals"]] == [theirs]
    for path in ("/departments/bh-market/load", "/jurisdictions/tj-binhai/kpis"):
        status, body = await api.call("enterprise", "GET", path)
        assert status == 403 and body["error"]["code"] == "forbidden", (path, body)
    status, body = await api.call("enterprise", "GET", "/departments")
    assert status == 200 and body["departments"] == []


async def test_an_intake_key_bound_to_a_source_system_submits_only_for_it(
        settings: Settings, topics: Settings, runtime: Runtime, api: Api) -> None:
    status, body = await api.call("hotline-intake", "POST", "/appeals", submission(source_system="web-portal"))
    assert status == 403 and body["error"]["details"]["field"] == "source_system", body
    assert "bound to" in body["error"]["details"]["rule"]
    assert stored(settings)["events"] == 0
    status, body = await api.call("hotline-intake", "POST", "/appeals", submission(source_system="hotline-12345"))
    assert status == 201, body
    own = body["case_id"]
    # It reads and acts for its own system's cases only: another system's case does not exist for it.
    other = (await api.call("intake", "POST", "/appeals", submission(source_system="web-portal")))[1]["case_id"]
    for path in (f"/appeals/{other}", f"/appeals/{other}/history"):
        status, body = await api.call("hotline-intake", "GET", path)
        assert status == 404, (path, body)
    status, body = await api.do("hotline-intake", other, "withdraw", reason="不再需要")
    assert status == 404, body
    async with faust_worker(topics, runtime.clock):
        for case in (own, other):
            await caught_up(topics, case)
    status, listing = await api.call("hotline-intake", "GET", "/appeals")
    assert [x["case_id"] for x in listing["appeals"]] == [own]
    status, body = await api.call("hotline-intake", "GET", f"/appeals/{own}")
    assert status == 200, body
    status, body = await api.do("hotline-intake", own, "withdraw", reason="企业撤回")
    assert status == 200, body


async def test_a_department_key_sees_only_its_own_department_in_the_listing(api: Api) -> None:
    status, body = await api.call("bh-market", "GET", "/departments")
    assert status == 200 and [d["code"] for d in body["departments"]] == ["bh-market"]
    status, body = await api.call("dispatcher", "GET", "/departments")
    assert len(body["departments"]) > 1


async def test_keys_for_enterprises_must_name_them(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(monkeypatch, capsys, settings, "keys", "create", "--role", "enterprise")
    assert code == 2 and "--uscc" in err
    code, _, err = cli(monkeypatch, capsys, settings, "keys", "create", "--role", "enterprise", "--uscc", "123")
    assert code == 2 and "must be 18 characters" in err
    assert cli(monkeypatch, capsys, settings, "keys", "create", "--role", "dispatcher", "--uscc", OTHER_USCC)[0] == 2
    code, _, _ = cli(monkeypatch, capsys, settings, "keys", "create", "--role", "enterprise", "--uscc", OTHER_USCC,
                     "--uscc", ENTERPRISE_USCC)
    assert code == 0
    code, out, _ = cli(monkeypatch, capsys, settings, "keys", "list")
    assert f"{OTHER_USCC},{ENTERPRISE_USCC}" in out
