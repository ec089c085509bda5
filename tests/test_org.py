"""A deployment's own organisation: loaded, checked, versioned, and reorganised without
breaking history (merge, dissolve with transfers), on the real database, broker and worker."""

from __future__ import annotations

import asyncio
import contextlib
import io
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openpyxl
import psycopg
import pytest
import tomli_w

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.domain import DomainError
from suqiu.domain.model import Actor, Role
from suqiu.domain.org import parse, to_document
from suqiu.service.commands import CommandRequest
from suqiu.service.runtime import Runtime
from suqiu.stack.embedded import EmbeddedPostgres
from suqiu.store import reference
from suqiu.store.migrate import migrate
from tests.conftest import SYSTEM, Api, run_cli, schema_dsn, submission
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, cst, eventually, query, replay, snapshot

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "org"


async def cli(monkeypatch: pytest.MonkeyPatch, dsn: str, *argv: str, policy: str | None = None) -> tuple[int, str, str]:
    """`suqiu …` in a thread (it runs event loops of its own), with its output."""
    monkeypatch.setenv("SUQIU_DATABASE_URL", dsn)
    if policy:
        monkeypatch.setenv("SUQIU_SLA_POLICY", policy)
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return run_cli(["--log-level", "WARNING", *argv])

    code = await asyncio.to_thread(run)
    return code, out.getvalue(), err.getvalue()


def empty_schema(postgres: EmbeddedPostgres) -> str:
    schema = f"o_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = schema_dsn(postgres.dsn, schema)
    migrate(dsn)
    return dsn


def seed_doc() -> dict[str, Any]:
    return tomllib.loads(reference.seed_document())


def write(tmp_path: Path, doc: dict[str, Any], name: str = "org.toml") -> str:
    path = tmp_path / name
    path.write_text(tomli_w.dumps(doc), "utf-8")
    return str(path)


def versions(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM org_versions").fetchone()
    return int(row[0]) if row else 0


async def test_a_second_city_is_loaded_and_takes_its_own_appeals(
        postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch, master_key_file: str) -> None:
    dsn = empty_schema(postgres)
    policy = str(EXAMPLES / "mianyang-policy.toml")
    city = str(EXAMPLES / "mianyang.toml")
    code, out, err = await cli(monkeypatch, dsn, "org", "check", city, policy=policy)
    assert code == 0 and "+ department kjc-service 科技城直管区企业服务中心 (my-kjc)" in out, (out, err)
    assert versions(dsn) == 0  # a check loads nothing
    code, out, _ = await cli(monkeypatch, dsn, "org", "load", city, "--by", "市营商环境局", policy=policy)
    assert code == 0 and "loaded as version 1" in out
    code, out, _ = await cli(monkeypatch, dsn, "org", "load", city, policy=policy)
    assert code == 0 and "nothing to load" in out and versions(dsn) == 1
    code, shown, _ = await cli(monkeypatch, dsn, "org", "show")
    assert tomllib.loads(shown) == to_document(parse(tomllib.loads(Path(city).read_text("utf-8"))))
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT loaded_by FROM org_versions").fetchone() == ("市营商环境局",)
    # The default policy has goals for Tianjin's categories, which Mianyang does not have: the
    # organisation check and the policy check both say so.
    default = str(Path(__file__).resolve().parents[1] / "suqiu" / "policies" / "default.toml")
    code, _, err = await cli(monkeypatch, dsn, "org", "check", city, policy=default)
    assert code == 2 and "category land_planning: the SLA policy" in err
    code, _, err = await cli(monkeypatch, dsn, "policy", "check", default)
    assert code == 2 and "organisation does not have (or has retired): land_planning, legal_ip" in err
    assert "talent" in err
    code, out, err = await cli(monkeypatch, dsn, "policy", "check", policy)
    assert code in (0, 1) and "version 'mianyang-1'" in out, err  # 1 only for the calendar's coming year-end
    assert "organisation does not have" not in err

    rt = await Runtime(Settings(database_url=dsn, system_id=SYSTEM, sla_policy=policy, master_key_file=master_key_file),
                       clock=ManualClock(cst(2026, 7, 21, 10, 0))).open()
    try:
        intake, dispatcher = Actor(SYSTEM, Role.INTAKE), Actor(SYSTEM, Role.DISPATCHER)
        body = {**submission(jurisdiction="my-kjc", category="talent"), "command_id": str(uuid.uuid4())}
        case = (await rt.service.execute(CommandRequest("submit", body.pop("command_id"), intake, body))).case_id
        await rt.service.execute(CommandRequest("dispatch", str(uuid.uuid4()), dispatcher,
                                                {"department": "kjc-service"}, case_id=case))
        with pytest.raises(DomainError) as refused:
            other = submission(jurisdiction="my", category="market")
            await rt.service.execute(CommandRequest("submit", other.pop("command_id"), intake, other))
        assert refused.value.details["field"] == "category" and "talent" in refused.value.details["allowed"]
        again = submission(jurisdiction="my-fucheng", category="land")
        fresh = (await rt.service.execute(CommandRequest("submit", again.pop("command_id"), intake, again))).case_id
        with pytest.raises(DomainError) as refused:
            await rt.service.execute(CommandRequest("dispatch", str(uuid.uuid4()), dispatcher,
                                                    {"department": "bh-market"}, case_id=fresh))
        assert refused.value.details["field"] == "department"
    finally:
        await rt.close()


def _drop_department(doc: dict[str, Any]) -> None:
    doc["departments"] = [d for d in doc["departments"] if d["code"] != "bh-eco"]


def _orphan(doc: dict[str, Any]) -> None:
    doc["jurisdictions"].append({"code": "tj-new", "name": "新区", "level": "zone", "parent": "nowhere"})


def _cycle(doc: dict[str, Any]) -> None:
    for j in doc["jurisdictions"]:
        if j["code"] == "tj-teda":
            j["parent"] = "tj-ftz"
        if j["code"] == "tj-ftz":
            j["parent"] = "tj-teda"


def _reuse(doc: dict[str, Any]) -> None:
    next(j for j in doc["jurisdictions"] if j["code"] == "tj-teda")["level"] = "district"


def _retire_policy_category(doc: dict[str, Any]) -> None:
    next(c for c in doc["categories"] if c["code"] == "land_planning")["retired"] = True


@pytest.mark.parametrize(("edit", "says"), [
    (_drop_department, "department bh-eco: missing from the file; codes are never dropped"),
    (_orphan, "jurisdiction tj-new: parent 'nowhere' is not a jurisdiction (an orphan)"),
    (_cycle, "its parents form a cycle"),
    (_reuse, "jurisdiction tj-teda: was a zone, the file says district: a code is not reused"),
    (_retire_policy_category, "category land_planning: the SLA policy"),
])
async def test_a_file_that_would_break_the_organisation_is_refused_and_nothing_loaded(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, edit: Any, says: str) -> None:
    doc = seed_doc()
    edit(doc)
    assert settings.database_url
    before = (versions(settings.database_url), snapshot_org(settings.database_url))
    for verb in ("check", "load"):
        code, out, err = await cli(monkeypatch, settings.database_url, "org", verb, write(tmp_path, doc))
        assert code == 2 and says in err and "nothing loaded" in err, (verb, out, err)
    assert (versions(settings.database_url), snapshot_org(settings.database_url)) == before


async def test_dissolving_a_department_with_open_cases_needs_a_successor(
        topics: Settings, api: Api, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert topics.database_url
    async with faust_worker(topics, clock):
        case = (await api.submit())["case_id"]
        await api.ok("dispatcher", case, "dispatch", department="bh-market")
        await caught_up(topics, case)
    doc = seed_doc()
    next(d for d in doc["departments"] if d["code"] == "bh-market")["dissolved"] = True
    before = snapshot_org(topics.database_url)
    code, _, err = await cli(monkeypatch, topics.database_url, "org", "load", write(tmp_path, doc))
    assert code == 2 and "department bh-market: dissolved with 1 open cases and no successor" in err
    assert snapshot_org(topics.database_url) == before


def snapshot_org(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        return to_document(reference.current(conn))


async def test_merge_and_dissolve_keep_history_and_move_open_cases(
        topics: Settings, api: Api, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = topics.with_(timer_interval=0.05)
    assert s.database_url
    async with faust_worker(s, clock):
        done = (await api.submit(title="已办结"))["case_id"]
        await api.ok("dispatcher", done, "dispatch", department="bh-hrss")
        await api.ok("bh-hrss", done, "accept")
        await api.ok("bh-hrss", done, "reply", content="已答复")
        await api.ok("dispatcher", done, "close", outcome="resolved")
        held = (await api.submit(title="环评咨询"))["case_id"]
        await api.ok("dispatcher", held, "dispatch", department="bh-hrss")
        await api.ok("bh-hrss", held, "accept")
        taxed = (await api.submit(title="税费"))["case_id"]
        await api.ok("dispatcher", taxed, "dispatch", department="bh-planning")
        for case in (done, held, taxed):
            await caught_up(s, case)
        resolve_due = query(s, "SELECT resolve_due FROM case_view WHERE case_id = %s", held)[0][0]
        status, hrss_before = await api.call("dispatcher", "GET", "/departments/bh-hrss/load")
        status, binhai_before = await api.call("dispatcher", "GET", "/jurisdictions/tj-binhai/kpis")
        between = datetime.now(UTC)

        doc = seed_doc()
        for d in doc["departments"]:
            if d["code"] == "bh-hrss":
                d["merged_into"] = "bh-market"
            if d["code"] == "bh-planning":
                d.update(dissolved=True, successor="bh-approval")
            if d["code"] == "bh-approval":
                d["name"] = "滨海新区政务服务办公室"
        code, out, err = await cli(monkeypatch, s.database_url, "org", "load", write(tmp_path, doc), "--by", "编办")
        assert code == 0, err
        assert "> department bh-hrss merged into bh-market" in out and "x department bh-planning dissolved" in out
        assert "transferred 1 open case from bh-hrss to bh-market" in out
        assert "transferred 1 open case from bh-planning to bh-approval" in out
        for case in (held, taxed):
            await caught_up(s, case)

        # The open cases moved by ordinary transfers from the system, the accept clock restarted.
        last = query(s, "SELECT event_type, actor_role, data->>'reason' FROM case_timeline WHERE case_id = %s "
                        "ORDER BY seq DESC LIMIT 1", held)[0]
        assert last[0] == "AppealTransferred" and last[1] == "system" and "机构调整" in last[2]
        view = query(s, "SELECT department, status, resolve_due, accept_due > now() FROM case_view "
                        "WHERE case_id = %s", held)[0]
        assert view == ("bh-market", "dispatched", resolve_due, True)
        assert query(s, "SELECT department FROM case_view WHERE case_id = %s", taxed)[0][0] == "bh-approval"
        # Every process picks the new version up within seconds, without a restart.
        for _ in range(50):
            status, listing = await api.call("dispatcher", "GET", "/departments")
            hrss = next(d for d in listing["departments"] if d["code"] == "bh-hrss")
            if not hrss["active"]:
                break
            await asyncio.sleep(0.2)
        assert hrss["merged_into"] == "bh-market" and not hrss["active"]
        # The history keeps who held it then; the list shows who answers for it now.
        assert query(s, "SELECT department FROM case_view WHERE case_id = %s", done)[0][0] == "bh-hrss"
        status, page = await api.call("dispatcher", "GET", "/appeals?department=bh-market")
        listed = {x["case_id"]: x for x in page["appeals"]}
        assert listed[done]["department"] == "bh-hrss" and listed[done]["current_department"] == "bh-market"
        status, one = await api.call("auditor", "GET", f"/appeals/{done}")
        assert (one["department"], one["current_department"]) == ("bh-hrss", "bh-market")
        assert held in listed
        # The successor holds the merged department's cases and history (suqiu.domain.access.answers_for):
        # what its key lists, it may open, with the history and the figures behind them.
        status, mine = await api.call("bh-market", "GET", "/appeals?department=bh-market")
        assert status == 200 and done in {x["case_id"] for x in mine["appeals"]}
        for path in (f"/appeals/{done}", f"/appeals/{done}/history", "/departments/bh-hrss/load",
                     "/appeals?department=bh-hrss"):
            status, body = await api.call("bh-market", "GET", path)
            assert status == 200, (path, body)
        status, listing = await api.call("bh-market", "GET", "/departments")
        assert {d["code"] for d in listing["departments"]} == {"bh-market", "bh-hrss"}
        for path in (f"/appeals/{done}", "/departments/bh-hrss/load"):  # no one else's key
            status, body = await api.call("bh-approval", "GET", path)
            assert status == 403, (path, body)

        status, then = await api.call("dispatcher", "GET", f"/departments?as_of={quote(between.isoformat())}")
        assert next(d for d in then["departments"] if d["code"] == "bh-hrss")["active"]
        assert next(d for d in then["departments"] if d["code"] == "bh-approval")["name"] == "滨海新区行政审批局"
        later = (await api.submit())["case_id"]
        status, body = await api.do("dispatcher", later, "dispatch", department="bh-hrss")
        assert status == 400 and body["error"]["details"]["successor"] == "bh-market"
        await caught_up(s, later)

        # Figures: the merged department's history stays its own before the merge date, and the
        # jurisdiction keeps all of it.
        status, hrss_after = await api.call("dispatcher", "GET", "/departments/bh-hrss/load")
        assert hrss_after["counts"]["assigned"] == hrss_before["counts"]["assigned"] == 2
        status, market = await api.call("dispatcher", "GET", "/departments/bh-market/load")
        assert market["counts"]["assigned"] == 1  # the transfer in; bh-hrss's July work is before the merge
        status, binhai = await api.call("dispatcher", "GET", "/jurisdictions/tj-binhai/kpis")
        assert binhai["counts"]["assigned"] == binhai_before["counts"]["assigned"] + 2  # the two transfers
        assert binhai["counts"]["replied"] == binhai_before["counts"]["replied"] == 1
        # Ranking and report keep a retired department in every period it had facts, marked, and
        # their rows add up to the jurisdiction's figures.
        status, ranked = await api.call("dispatcher", "GET", "/jurisdictions/tj-binhai/ranking")
        rows = {e["department"]: e for e in ranked["ranking"]}
        assert (rows["bh-hrss"]["active"], rows["bh-hrss"]["merged_into"]) == (False, "bh-market")
        assert rows["bh-hrss"]["counts"]["assigned"] == 2 and rows["bh-hrss"]["counts"]["replied"] == 1
        assert rows["bh-market"]["active"] and not rows["bh-planning"]["active"]
        for count in ("assigned", "replied", "closed", "response_due", "released"):
            assert sum(e["counts"][count] for e in ranked["ranking"]) == binhai["counts"][count], count
        status, july = await api.call("dispatcher", "GET", "/jurisdictions/tj-binhai/ranking?from=2026-07-01&to=2026-08-01")
        assert {e["department"] for e in july["ranking"]} >= {"bh-hrss", "bh-planning"}
        headers = {"Authorization": f"Bearer {api.keys['dispatcher']}"}
        async with api.session.get(f"{api.base}/v1/jurisdictions/tj-binhai/report.xlsx?month=2026-07",
                                   headers=headers) as resp:
            assert resp.status == 200
            report = await resp.read()
        sheet = openpyxl.load_workbook(io.BytesIO(report))["部门指标"]
        table = [dict(zip([c.value for c in sheet[2]], [c.value for c in r], strict=True)) for r in sheet.iter_rows(3)]
        names = {r["部门代码"]: r["部门"] for r in table}
        assert names["bh-hrss"] == "滨海新区人力资源和社会保障局（已合并）"
        assert names["bh-planning"].endswith("（已撤销）")
        total = next(r for r in table if r["部门"] == "合计")
        assert total["派单（本月）"] == sum(r["派单（本月）"] for r in table if r is not total) > 0

        # A reorganisation counts against nobody (suqiu.domain.response): a day on, the dissolved
        # department's assignment that the system moved before it was accepted is released, not late.
        clock.set(clock.now() + timedelta(days=1))
        status, planning = await api.call("dispatcher", "GET", "/departments/bh-planning/load")
        assert status == 200, planning
        assert (planning["counts"]["assigned"], planning["counts"]["released"]) == (1, 1)
        assert (planning["counts"]["response_due"], planning["response_rate"]) == (0, None)
        status, binhai_later = await api.call("dispatcher", "GET", "/jurisdictions/tj-binhai/kpis")
        assert binhai_later["counts"]["released"] == 1

        # A rebuild from the store equals the live read models.
        await eventually(lambda: query(s, "SELECT count(*) FROM sla_timers WHERE fire_at <= %s", clock.now())[0][0],
                         lambda n: n == 0)
        live = snapshot(s)
        code, _ = await replay(s, "rebuild")
        rebuilt = snapshot(s)
        assert code == 0 and rebuilt == live
