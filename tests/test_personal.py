"""Personal data (个人信息): sealed per subject, shown by role, erased by crypto-shredding, retained
no longer than the policy says; proved by scanning every table, topic and package for the values."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from suqiu.base.sealing import MasterKey
from suqiu.domain.personal import ERASED, labelled, mask, pull_numbers, shown_text, valid_id_card
from suqiu.service.runtime import Runtime
from suqiu.store.subjects import PgKeyStore
from suqiu.streams.retention import run_retention
from tests.conftest import Api, submission
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, eventually, query, replay

PHONE, NAME, MOBILE, ID_CARD = "13912345678", "张三丰", "13812345678", "11010519491231002X"
SEEDED = (PHONE, NAME, MOBILE, ID_CARD)
CONTENT = f"请回电{MOBILE}，或联系法人（身份证{ID_CARD}），订单号123456789012345678不是证件号。"


def personal_submission(phone: str = PHONE, name: str = NAME, **overrides: Any) -> dict[str, Any]:
    body = submission(content=CONTENT, title=f"施工许可进度（{MOBILE}）", **overrides)
    body["enterprise"] = {**body["enterprise"], "contact_name": name, "contact_phone": phone}
    return body


def plaintext_rows(settings: Settings, values: tuple[str, ...] = SEEDED) -> dict[str, int]:
    """Every table of the deployment's schema, each row as text (bytea as hex), searched for `values`."""
    found: dict[str, int] = {}
    tables = [r[0] for r in query(settings, "SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")]
    for table in tables:
        for value in values:
            hexed = value.encode().hex()
            n = query(settings, f"SELECT count(*) FROM {table} t WHERE t::text LIKE %s OR t::text LIKE %s",
                      f"%{value}%", f"%{hexed}%")[0][0]
            if n:
                found[f"{table}:{value}"] = n
    return found


def test_numbers_are_found_marked_and_masked() -> None:
    assert valid_id_card(ID_CARD) and not valid_id_card("110105194912310021")
    (title, content), items = pull_numbers([f"电话 {MOBILE}", CONTENT + " 座机022-66200001"])
    assert items == (MOBILE, MOBILE, ID_CARD, "022-66200001")
    assert MOBILE not in title + content and "123456789012345678" in content  # no valid check digit
    assert labelled(content).startswith("请回电[电话]，或联系法人（身份证[证件号]）")
    from suqiu.domain.personal import Personal

    p = Personal(NAME, PHONE, items)
    assert shown_text(content, p, plain=False).startswith("请回电138****5678，或联系法人（身份证110105********002X）")
    assert shown_text(content, p, plain=True) == CONTENT + " 座机022-66200001"
    assert shown_text(content, None, plain=True).startswith(f"请回电{ERASED}")
    assert mask("022-66200001") == "022*****0001"


async def test_personal_fields_are_sealed_shown_by_role_and_erased(
        topics: Settings, runtime: Runtime, api: Api, tmp_path: Path) -> None:
    s = topics
    async with faust_worker(s, runtime.clock):
        first = (await api.call("intake", "POST", "/appeals", personal_submission()))[1]["case_id"]
        second = (await api.call("intake", "POST", "/appeals", personal_submission()))[1]["case_id"]
        other = (await api.call("intake", "POST", "/appeals", personal_submission("13700000001", "李四")))[1]["case_id"]
        await api.ok("dispatcher", first, "dispatch", department="bh-market")
        for case in (first, second, other):
            await caught_up(s, case)

        # Each role sees exactly what it may: plain for the handlers and the enterprise, masked for the rest.
        views = {who: (await api.call(who, "GET", f"/appeals/{first}"))[1]
                 for who in ("dispatcher", "admin", "bh-market", "enterprise", "auditor")}
        for who in ("dispatcher", "admin", "bh-market", "enterprise"):
            assert views[who]["enterprise"]["contact_phone"] == PHONE, who
            assert views[who]["title"] == f"施工许可进度（{MOBILE}）", who
        auditor = views["auditor"]
        assert auditor["enterprise"] | {"uscc": None, "name": None} == {
            "uscc": None, "name": None, "contact_name": "张**", "contact_phone": "139****5678"}
        assert "contact_subject" not in auditor["enterprise"] and "subject" not in auditor and "sealed" not in auditor
        events = (await api.call("auditor", "GET", f"/appeals/{first}/history"))[1]["events"]
        assert events[0]["data"]["content"].startswith("请回电138****5678，或联系法人（身份证110105********002X）")
        events = (await api.call("bh-market", "GET", f"/appeals/{first}/history"))[1]["events"]
        assert events[0]["data"]["content"] == CONTENT
        # Moved on to another department, the first one reads the case it held, masked.
        await api.ok("dispatcher", first, "transfer", department="bh-hrss", reason="职责调整")
        after = (await api.call("bh-market", "GET", f"/appeals/{first}"))[1]
        assert after["enterprise"]["contact_phone"] == "139****5678"
        assert (await api.call("bh-hrss", "GET", f"/appeals/{first}"))[1]["enterprise"]["contact_phone"] == PHONE
        # The same contact is one subject; the store, the read models and the outbox hold no plain value.
        subject = views["admin"]["enterprise"]["contact_subject"]
        assert (await api.call("admin", "GET", f"/appeals/{second}"))[1]["enterprise"]["contact_subject"] == subject
        assert plaintext_rows(s) == {}

        # Erasure: admins only, a subject that exists, a reason; refusals store nothing.
        before = query(s, "SELECT count(*) FROM events")[0][0]
        path = f"/personal-data/{subject}/erase"
        assert (await api.call("dispatcher", "POST", path, {"reason": "申请"}))[0] == 403
        assert (await api.call("admin", "POST", "/personal-data/not-a-uuid/erase", {"reason": "x"}))[0] == 400
        assert (await api.call("admin", "POST", f"/personal-data/{uuid.uuid4()}/erase", {"reason": "x"}))[0] == 404
        assert (await api.call("admin", "POST", path, {"reason": "x", "extra": 1}))[0] == 400
        assert (await api.call("admin", "POST", path, {}))[0] == 400
        assert query(s, "SELECT count(*) FROM events")[0][0] == before
        status, erased = await api.call("admin", "POST", path, {"reason": "PIPL 第47条 删除申请 2026-001"})
        assert status == 200 and erased["key_deleted"] and sorted(erased["cases"]) == sorted([first, second])
        await caught_up(s, first)
        # A second request deletes nothing and records nothing twice.
        status, again = await api.call("admin", "POST", path, {"reason": "重复申请"})
        assert status == 200 and not again["key_deleted"]
        assert query(s, "SELECT count(*) FROM events")[0][0] == before + 2

        gone = (await api.call("dispatcher", "GET", f"/appeals/{first}"))[1]
        assert gone["enterprise"]["contact_phone"] == ERASED and gone["title"] == f"施工许可进度（{ERASED}）"
        events = (await api.call("dispatcher", "GET", f"/appeals/{first}/history"))[1]["events"]
        assert events[-1]["event_type"] == "PersonalDataErased" and events[-1]["data"]["subject"] == subject
        assert events[0]["data"]["content"].startswith(f"请回电{ERASED}")
        kept = (await api.call("dispatcher", "GET", f"/appeals/{other}"))[1]  # another contact: untouched
        assert kept["enterprise"]["contact_phone"] == "13700000001"

    # The chains still verify; a rebuild and an export bring back no plaintext.
    assert (await replay(s, "verify", "--all"))[0] == 0
    assert (await replay(s, "rebuild"))[0] == 0
    pkg = tmp_path / "pkg"
    code, _ = await replay(s, "export", "--from", "2026-07-01T00:00+08:00", "--to", "2026-08-01T00:00+08:00",
                           "--out", str(pkg))
    assert code == 0
    text = "".join(p.read_text("utf-8") for p in pkg.iterdir())
    assert not [v for v in SEEDED if v in text or v.encode().hex() in text]
    assert plaintext_rows(s, (*SEEDED, "13700000001", "李四")) == {}
    assert query(s, "SELECT lookup, wrapped_key, erase_reason FROM personal_subjects WHERE subject_id = %s",
                 subject) == [(None, None, "PIPL 第47条 删除申请 2026-001")]
    # Under another master key (a lost key file replaced), the other contact's key does not open:
    # the reader gets nothing, never an error page.
    other_subject = (await api.call("admin", "GET", f"/appeals/{other}"))[1]["enterprise"]["contact_subject"]
    assert await PgKeyStore(runtime.pool, MasterKey(bytes(32))).keys([other_subject]) == {}
    assert await runtime.subjects.keys([other_subject]) != {}


async def test_retention_erases_a_contact_once_all_its_cases_ended_long_enough_ago(
        topics: Settings, runtime: Runtime, clock: ManualClock, api: Api) -> None:
    s = topics
    async with faust_worker(s, runtime.clock):
        done = (await api.call("intake", "POST", "/appeals", personal_submission()))[1]["case_id"]
        still_open = (await api.call("intake", "POST", "/appeals", personal_submission("13700000002", "王五")))[1]
        for step, who, fields in (("dispatch", "dispatcher", {"department": "bh-market"}), ("accept", "bh-market", {}),
                                  ("reply", "bh-market", {"content": "已办理"}),
                                  ("close", "dispatcher", {"outcome": "resolved"})):
            await api.ok(who, done, step, **fields)
        for case in (done, still_open["case_id"]):
            await caught_up(s, case)
        clock.advance(timedelta(days=29))
        assert await runtime.erasure.sweep(30) == 0  # not yet
        clock.advance(timedelta(days=2))
        timer = asyncio.create_task(run_retention(runtime.erasure, 30, 0.05))
        try:
            await eventually(lambda: query(s, "SELECT event_type FROM events WHERE case_id = %s ORDER BY seq DESC "
                                              "LIMIT 1", done), lambda rows: rows == [("PersonalDataErased",)])
        finally:
            timer.cancel()
    events = (await api.call("dispatcher", "GET", f"/appeals/{done}/history"))[1]["events"]
    assert events[-1]["actor"]["person"] == "retention"
    assert (await api.call("dispatcher", "GET", f"/appeals/{done}"))[1]["enterprise"]["contact_phone"] == ERASED
    opened = (await api.call("dispatcher", "GET", f"/appeals/{still_open['case_id']}"))[1]
    assert opened["enterprise"]["contact_phone"] == "13700000002"  # its case is open: kept


@pytest.mark.parametrize("value", ["\x1aP0\x1a", "前\x1aI3\x1a后"])
async def test_a_mark_cannot_be_sent(settings: Settings, runtime: Runtime, api: Api, value: str) -> None:
    status, body = await api.call("intake", "POST", "/appeals", submission(content=value))
    assert status == 400 and body["error"]["details"]["field"] == "content"
    assert query(settings, "SELECT count(*) FROM events") == [(0,)]
