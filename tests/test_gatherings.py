"""Gatherings (座谈会, 走访): recorded once, their appeals submitted in one call and answered one
by one, and read back with every appeal raised there."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from typing import Any

import openpyxl

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.domain.model import Actor, Role
from suqiu.schemas.codec import Codec
from suqiu.service.runtime import Runtime
from tests.conftest import OTHER_USCC, Api, stored, submission
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up

SYMPOSIUM = {"kind": "symposium", "date": "2026-07-20", "jurisdiction": "tj-binhai", "host": "滨海新区营商办",
             "title": "营商环境面对面：工程建设审批", "participants": [
                 {"uscc": "91110000600037341L", "name": "天津某某科技有限公司"},
                 {"uscc": OTHER_USCC, "name": "天津某某制造有限公司"}]}


async def record_symposium(api: Api) -> str:
    status, body = await api.call("dispatcher", "POST", "/gatherings", {**SYMPOSIUM, "command_id": str(uuid.uuid4())})
    assert status == 201, body
    return str(body["gathering_id"])


def symposium_appeals(n: int) -> list[dict[str, Any]]:
    return [submission(source_ref=f"MY-ZTH-2026-{i:03d}", title=f"座谈会诉求 {i}") for i in range(n)]


async def test_a_gathering_is_recorded_once_and_refusals_name_the_field(runtime: Runtime, api: Api) -> None:
    sent = {**SYMPOSIUM, "command_id": f"zth-{uuid.uuid4().hex[:8]}"}
    status, first = await api.call("dispatcher", "POST", "/gatherings", sent)
    gid = first["gathering_id"]
    assert status == 201 and gid.startswith("g-")
    status, again = await api.call("dispatcher", "POST", "/gatherings", sent)
    assert status == 200 and again["gathering_id"] == gid and again["kind_label"] == "座谈会"
    assert len(again["participants"]) == 2 and again["title"] == SYMPOSIUM["title"]
    status, body = await api.call("dispatcher", "POST", "/gatherings", {**sent, "title": "另一个主题"})
    assert status == 409 and body["error"]["code"] == "idempotency_mismatch"
    for wrong, field in (({"kind": "party"}, "kind"), ({"date": "2026-13-01"}, "date"), ({"command_id": ""}, "command_id"),
                         ({"jurisdiction": "tj-nowhere"}, "jurisdiction"),
                         ({"participants": [{"uscc": "123", "name": "某公司"}]}, "participants[0].uscc"),
                         ({"extra": 1}, "extra")):
        status, body = await api.call("dispatcher", "POST", "/gatherings",
                                      {**SYMPOSIUM, "command_id": f"other-{uuid.uuid4().hex[:6]}", **wrong})
        assert status == 400 and body["error"]["details"]["field"] == field, (wrong, body)
    assert (await api.call("intake", "POST", "/gatherings", {**sent, "command_id": "by-intake"}))[0] == 403
    assert (await api.call("enterprise", "GET", f"/gatherings/{gid}"))[0] == 403
    assert (await api.call("dispatcher", "GET", "/gatherings/no-such"))[0] == 404


async def test_a_symposium_of_37_appeals_with_3_malformed_stores_34_and_names_3(
        topics: Settings, runtime: Runtime, clock: ManualClock, api: Api) -> None:
    gid = await record_symposium(api)
    appeals = symposium_appeals(37)
    del appeals[5]["title"]
    appeals[17]["category"] = "no-such-category"
    appeals[30]["enterprise"] = {**appeals[30]["enterprise"], "uscc": "91110000600037341X"}
    status, body = await api.call("intake", "POST", f"/gatherings/{gid}/appeals", {"appeals": appeals})
    assert status == 200 and body["counts"] == {"created": 34, "duplicate": 0, "refused": 3}
    refused = {r["index"]: r for r in body["results"] if r["status"] >= 400}
    assert {i: r["error"]["details"]["field"] for i, r in refused.items()} == {
        5: "appeals[5].title", 17: "appeals[17].category", 30: "appeals[30].enterprise.uscc"}
    assert [r["index"] for r in body["results"]] == list(range(37))  # in the order sent
    before = stored(topics)
    # The same call again: 34 duplicates, nothing new; the 3 are refused again.
    status, again = await api.call("intake", "POST", f"/gatherings/{gid}/appeals", {"appeals": appeals})
    assert again["counts"] == {"created": 0, "duplicate": 34, "refused": 3}
    assert stored(topics) == before
    # An item for another gathering, a call over 500 and a gathering that does not exist: refused, nothing stored.
    other = {**submission(), "gathering": "somewhere-else"}
    status, body = await api.call("intake", "POST", f"/gatherings/{gid}/appeals", {"appeals": [other]})
    assert body["results"][0]["error"]["details"]["field"] == "appeals[0].gathering"
    assert (await api.call("intake", "POST", f"/gatherings/{gid}/appeals",
                           {"appeals": symposium_appeals(501)}))[0] == 413
    assert (await api.call("intake", "POST", "/gatherings/no-such/appeals", {"appeals": appeals}))[0] == 404
    assert (await api.call("dispatcher", "POST", f"/gatherings/{gid}/appeals",
                           {"appeals": [submission()]}))[1]["results"][0]["status"] == 403
    assert stored(topics) == before

    created = [r["case_id"] for r in again["results"] if r["status"] == 200]
    done, late = created[0], created[1]
    async with faust_worker(topics, runtime.clock):
        # One answered in time and rated; one dispatched and left past its deadline; the rest waiting.
        await api.ok("dispatcher", done, "dispatch", department="bh-market", responsible="王科长")
        await api.ok("bh-market", done, "accept")
        await api.ok("bh-market", done, "reply", content="已协调办理，施工许可已核发")
        await api.ok("dispatcher", done, "close", outcome="resolved")
        await api.ok("enterprise", done, "feedback", rating="satisfied")
        await api.ok("dispatcher", late, "dispatch", department="bh-hrss")
        await api.ok("bh-hrss", late, "accept", responsible="李科员")
        clock.advance(timedelta(days=60))
        for case in created:
            await caught_up(topics, case)
        status, view = await api.call("dispatcher", "GET", f"/gatherings/{gid}")
        status_account, account = await api.call("intake", "GET", f"/gatherings/{gid}/account")
        async with api.session.get(f"{api.base}/v1/gatherings/{gid}/account.xlsx",
                                   headers={"Authorization": f"Bearer {api.keys['dispatcher']}"}) as resp:
            workbook = await resp.read()
    assert status == 200 and view["counts"]["appeals"] == 34 and view["title"] == SYMPOSIUM["title"]
    assert {a["case_id"] for a in view["appeals"]} == set(created)
    history = (await api.call("dispatcher", "GET", f"/appeals/{done}/history"))[1]["events"]
    assert history[0]["data"]["gathering"] == gid

    # The account (交账单): its summary, and each line as the host sends it back.
    assert status_account == 200
    assert account["summary"] == {"appeals": 34, "answered": 1, "on_time": 1, "overdue": 1, "rated": 1, "satisfied": 1}
    lines = {a["case_id"]: a for a in account["appeals"]}
    assert (lines[done]["department"], lines[done]["responsible"], lines[done]["reply"]) == \
        ("bh-market", "王科长", "已协调办理，施工许可已核发")
    assert lines[done]["on_time"] and not lines[done]["overdue"]
    assert lines[late]["responsible"] == "李科员" and lines[late]["overdue"] and not lines[late]["answered"]
    rows = list(openpyxl.load_workbook(io.BytesIO(workbook)).active.iter_rows(values_only=True))
    assert "交账单" in str(rows[0][0]) and "合计 34 件" in str(rows[1][0]) and rows[2][5] == "责任人"
    by_ref = {r[1]: r for r in rows[3:]}
    done_ref = next(a["source_ref"] for a in account["appeals"] if a["case_id"] == done)
    assert by_ref[done_ref][4:9] == ("滨海新区市场监督管理局", "王科长", by_ref[done_ref][6], "已办结", "已协调办理，施工许可已核发")
    assert by_ref[done_ref][11] == "满意"


def test_kafka_submits_carry_the_gathering() -> None:
    codec = Codec()
    body = {**submission(), "gathering": "zth-1"}
    del body["command_id"]
    data = codec.encode_command("submit", body, command_id="c", actor=Actor("s", Role.INTAKE))
    assert codec.decode_command(data)[2]["gathering"] == "zth-1"
