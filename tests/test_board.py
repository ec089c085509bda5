"""The supervision board in headless Chromium (Debian's package, driven by Playwright) against the real stack."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from tests.conftest import Api, submission
from tests.support.board import CHROMIUM, Screen, sign_in
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, cst, eventually, query

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is installed by scripts/bootstrap.sh")


async def test_the_board_for_a_dispatcher_a_department_and_an_auditor(
        topics: Settings, api: Api, clock: ManualClock, browser: Browser) -> None:
    s = topics.with_(timer_interval=0.05)
    async with faust_worker(s, clock):
        late = (await api.submit(title="园区道路施工许可（回电13812345678）", source_ref="TJ12345-20260721-0042"))["case_id"]
        await api.ok("dispatcher", late, "dispatch", department="bh-market")  # accept by 12:00
        other = (await api.submit(title="稳岗补贴"))["case_id"]
        await api.ok("dispatcher", other, "dispatch", department="bh-planning")
        await api.ok("bh-planning", other, "accept")
        clock.set(cst(2026, 7, 21, 15, 0))
        await eventually(lambda: query(s, "SELECT count(*) FROM events WHERE case_id = %s AND "
                                          "event_type = 'SlaBreached'", late)[0][0], lambda n: n == 1)
        for case in (late, other):
            await caught_up(s, case)

        # A dispatcher: the overdue case first, its breach on the timeline at 12:00, and an urge.
        d = await sign_in(browser, api, "dispatcher")
        first = d.page.locator("#late tbody tr").first
        assert await first.get_attribute("data-case") == late
        assert "签收时限" in await first.inner_text() and "超期 3.0 小时" in await first.inner_text()
        assert await d.page.locator("#departments tbody tr").count() > 1
        # Waits by selector, not by a JavaScript string: the board's CSP forbids eval, and with it
        # Playwright's polling of wait_for_function.
        await d.page.locator("#daily .main-svg").first.wait_for()  # Plotly drew
        await d.fits("overview")
        # A sort survives the refresh that replaces the rows every 5 s.
        await d.page.click("#departments th:has-text('在办')")  # the most open cases first
        order = await d.page.locator("#departments tbody tr").evaluate_all("rs => rs.map(r => r.dataset.code)")
        await d.page.locator("#departments tbody").evaluate("b => { b.dataset.old = '1'; }")
        for _ in range(60):  # the refresh's new rows carry no mark (polled: the CSP forbids eval)
            if await d.page.locator("#departments tbody[data-old]").count() == 0:
                break
            await asyncio.sleep(0.25)
        assert await d.page.locator("#departments tbody[data-old]").count() == 0, "no refresh within 15 s"
        assert await d.page.get_attribute("#departments th:has-text('在办')", "data-dir") == "desc"
        assert await d.page.locator("#departments tbody tr").evaluate_all("rs => rs.map(r => r.dataset.code)") == order
        await d.page.click(f"#late a[href='/board/cases/{late}']")
        await d.page.wait_for_url(f"**/board/cases/{late}")
        # The step bar: 受理 and 派单 reached, with their times; 签收 not yet. Events named in Chinese.
        assert await d.page.locator("#steps li.done").count() == 2
        assert "派单" in await d.page.locator("#steps li[data-step=派单]").inner_text()
        assert await d.page.locator("#steps li[data-step=签收].todo").count() == 1
        assert "超期" in await d.page.locator("#timeline li[data-event=SlaBreached] strong").inner_text()
        assert "签收时限超期" in await d.page.locator("#timeline li[data-event=SlaBreached]").inner_text()
        # The board sees no personal data: a phone number in the title is named, not shown.
        assert "园区道路施工许可（回电[电话]）" in await d.page.locator("h1 + p").inner_text()
        assert "13812345678" not in await d.page.content()
        breach = d.page.locator("#timeline li[data-event=SlaBreached]")
        # Recorded when the timer fired (15:00), for the 12:00 accept deadline, both in Beijing time.
        assert "2026-07-21 15:00:00" in await breach.inner_text() and "截止 2026-07-21 12:00" in await breach.inner_text()
        assert await d.page.get_attribute("#chain", "data-chain") == "ok"
        await d.page.evaluate("window.__stayed = true")
        await d.page.fill("form[data-action] input[name=note]", "请尽快签收")
        await d.page.click("form[data-action] button[value=urge]")
        await expect(d.page.locator("form[data-action] .result")).to_have_text(re.compile(r"\S"))
        assert await d.page.inner_text("form[data-action] .result") == "已提交"
        await d.page.wait_for_selector("#timeline li[data-event=Urged]")
        assert await d.page.evaluate("window.__stayed === true")  # no reload
        assert "请尽快签收" in await d.page.locator("#timeline li[data-event=Urged]").inner_text()
        await caught_up(s, late)
        # A refusal from the command path, inline: transfer to the department that holds it.
        await d.page.select_option("form[data-action] select[name=department]", "bh-market")
        await d.page.fill("form[data-action] input[name=reason]", "重新指派")
        await d.page.click("form[data-action] button[value=transfer]")
        await d.page.wait_for_selector("form[data-action] .result.error")
        assert await d.page.inner_text("form[data-action] .result") == "输入有误：部门已是当前承办单位"  # in Chinese
        await d.fits("case")
        async with d.page.expect_download() as download:
            await d.page.click("a[href$='export.jsonl']")
        path = await (await download.value).path()
        assert path is not None and late in Path(path).read_text("utf-8")
        await d.page.goto(f"{api.base}/board/departments/bh-market")
        assert await d.page.locator("table.cases tbody tr").first.get_attribute("data-case") == late
        await d.page.locator("#monthly .main-svg").first.wait_for()
        await d.fits("department")
        # Each figure's box lies under its header: both right-aligned, their right edges together.
        headers = await d.page.locator("table.rates thead th").all()
        cells = await d.page.locator("table.rates tbody tr").first.locator("td").all()
        text_right = ("e => { const r = document.createRange(); r.selectNodeContents(e); "
                      "return r.getBoundingClientRect().right; }")
        for th, td in list(zip(headers, cells, strict=True))[1:]:
            assert abs(await th.evaluate(text_right) - await td.evaluate(text_right)) <= 1.5, await th.inner_text()
        await d.page.goto(f"{api.base}/board/search?q={late}")
        assert await d.page.locator("table.cases tbody tr").count() == 1
        await d.page.goto(f"{api.base}/board/search?q=TJ12345-20260721-0042")  # the 工单编号 a caller quotes
        assert await d.page.locator("table.cases tbody tr").first.get_attribute("data-case") == late
        assert await d.page.locator("table.cases tbody tr").count() == 1
        await d.fits("search")
        # A zone picked in the jurisdiction picker: its departments and cases only.
        await d.page.goto(f"{api.base}/board/")
        await d.page.select_option("select[name=jurisdiction]", "tj-teda")
        await d.page.click("form.period button")
        await d.page.wait_for_url("**/board/?jurisdiction=tj-teda*")
        codes = await d.page.locator("#departments tbody tr").evaluate_all("rows => rows.map(r => r.dataset.code)")
        assert sorted(codes) == ["teda-construction", "teda-service"], codes
        assert await d.page.locator("#late tbody tr[data-case]").count() == 0
        assert "天津经济技术开发区" in await d.page.inner_text(".kpis h2")
        assert (await d.page.request.get(f"{api.base}/board/?jurisdiction=nowhere")).status == 404
        # The one refusal provoked above is the browser's only complaint (it logs every 4xx answer).
        assert d.errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"], d.errors

        # A department key: its own department only, on every page.
        m = await sign_in(browser, api, "bh-market")
        assert await m.page.locator("#departments tbody tr").count() == 1
        assert "滨海新区市场监督管理局" in await m.page.inner_text("#departments")
        assert (await m.page.request.get(f"{api.base}/board/departments/bh-planning")).status == 403
        assert (await m.page.request.get(f"{api.base}/board/cases/{other}")).status == 403
        await m.fits("overview-department")
        assert m.errors == []

        # An auditor: no action buttons, and a forged action refused, with nothing stored.
        a = await sign_in(browser, api, "auditor")
        await a.page.goto(f"{api.base}/board/cases/{late}")
        assert await a.page.locator("form[data-action]").count() == 0
        # As of 10:30 Beijing time: the breach (recorded at 15:00) was not known yet, so it is greyed out.
        await a.page.goto(f"{api.base}/board/cases/{late}?at=2026-07-21T10:30")
        assert await a.page.locator("#timeline li[data-event=SlaBreached].later").count() == 1
        assert await a.page.locator("#timeline li[data-event=AppealSubmitted].later").count() == 0
        csrf = await a.page.get_attribute("body", "data-csrf")
        before = query(s, "SELECT count(*) FROM events WHERE case_id = %s", late)[0][0]
        forged = await a.page.request.post(f"{api.base}/board/cases/{late}/actions",
                                           form={"csrf": csrf or "", "type": "urge", "note": "伪造"})
        assert forged.status == 403 and (await forged.json())["error"]["code"] == "forbidden"
        stale = await d.page.request.post(f"{api.base}/board/cases/{late}/actions",
                                          form={"csrf": "not-the-token", "type": "urge", "note": "跨站"})
        assert stale.status == 403 and (await stale.json())["error"]["details"]["field"] == "csrf"
        assert query(s, "SELECT count(*) FROM events WHERE case_id = %s", late)[0][0] == before

        # Stored bytes altered: the badge turns red.
        query(s, "UPDATE events SET data = overlay(data placing '\\x00'::bytea from 20 for 1) "
                 "WHERE case_id = %s AND seq = 1 RETURNING seq", other)
        await a.page.goto(f"{api.base}/board/cases/{other}")
        assert await a.page.get_attribute("#chain", "data-chain") == "broken"
        assert "哈希链校验失败" in await a.page.inner_text("#chain")
        await a.fits("case-broken")
        assert a.errors == []

        # Logout ends the session on the server, not only in the browser.
        await d.page.goto(f"{api.base}/board/")
        await d.page.click("header form button")
        await d.page.wait_for_url("**/board/login")
        assert query(s, "SELECT count(*) FROM board_sessions WHERE key_hash = sha256(%s::bytea)",
                     api.keys["dispatcher"].encode())[0][0] == 0



async def test_a_gatherings_account_and_an_enterprises_file_on_the_board(
        topics: Settings, api: Api, clock: ManualClock, browser: Browser) -> None:
    body = {"command_id": "zth-board", "kind": "symposium", "date": "2026-07-20", "jurisdiction": "tj-binhai",
            "host": "滨海新区营商办", "title": "工程建设审批", "participants": []}
    status, recorded = await api.call("dispatcher", "POST", "/gatherings", body)
    assert status in (200, 201), recorded
    gid = recorded["gathering_id"]
    appeals = [submission(source_ref=f"ZTH-{i}", title=f"座谈会诉求{i}") for i in range(3)]
    created = (await api.call("intake", "POST", f"/gatherings/{gid}/appeals", {"appeals": appeals}))[1]["results"]
    cases = [r["case_id"] for r in created]
    async with faust_worker(topics, clock):
        await api.ok("dispatcher", cases[0], "dispatch", department="bh-market", responsible="王科长")
        for case in cases:
            await caught_up(topics, case)
        d = await sign_in(browser, api, "dispatcher")
        await d.page.goto(f"{api.base}/board/gatherings/{gid}")
        assert "合计 3 件" in await d.page.inner_text("#summary")
        row = d.page.locator(f"tr[data-case='{cases[0]}']")
        assert "王科长" in await row.inner_text() and "滨海新区市场监督管理局" in await row.inner_text()
        await d.fits("gathering")
        async with d.page.expect_download() as download:
            await d.page.click("#xlsx")
        saved = await (await download.value).path()
        assert saved is not None and Path(saved).read_bytes()[:2] == b"PK"  # an xlsx (zip) workbook
        await row.locator("a").click()
        await d.page.wait_for_url(f"**/board/cases/{cases[0]}")
        assert await d.page.get_attribute("#gathering", "href") == f"/board/gatherings/{gid}"
        await d.page.click("#enterprise")
        await d.page.wait_for_url("**/board/enterprises/*")
        assert "诉求 3 件" in await d.page.inner_text("#figures")
        assert await d.page.locator("table.cases tbody tr").count() == 3
        await d.fits("enterprise")
        # Only what decide would allow now: a withdrawn case offers nothing, a case not yet
        # dispatched 催办 but no 转办.
        await api.ok("enterprise", cases[1], "withdraw", reason="已自行解决")
        await d.page.goto(f"{api.base}/board/cases/{cases[1]}")
        assert await d.page.locator("form[data-action]").count() == 0
        await d.page.goto(f"{api.base}/board/cases/{cases[2]}")
        assert await d.page.locator("button[value=urge]").count() == 1
        assert await d.page.locator("button[value=transfer]").count() == 0
        # A department reads the case, but not the enterprise's file: no link to it.
        m = await sign_in(browser, api, "bh-market")
        await m.page.goto(f"{api.base}/board/cases/{cases[0]}")
        assert await m.page.locator("#enterprise").count() == 0
        assert d.errors == [] and m.errors == []
        # An enterprise signs in onto its own file, not onto a refusal.
        e = Screen(await (await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")).new_page())
        await e.page.goto(f"{api.base}/board/login")
        await e.page.fill("input[name=key]", api.keys["enterprise"])
        await e.page.click("button[type=submit]")
        await e.page.wait_for_url("**/board/enterprises/*")
        assert await e.page.locator("table.cases tbody tr").count() == 3
        assert "诉求 3 件" in await e.page.inner_text("#figures")
        assert e.errors == []


@pytest.mark.parametrize(("late", "said"), [(timedelta(seconds=20), "超期 1 分钟"), (timedelta(minutes=25), "超期 25 分钟"),
                                            (timedelta(hours=3), "超期 3.0 小时"), (timedelta(days=3), "超期 3.0 天"),
                                            (-timedelta(minutes=5), "")])
def test_how_late_a_case_is_never_reads_as_zero(late: timedelta, said: str) -> None:
    from suqiu.board.views import _past

    now = cst(2026, 7, 21, 15, 0)
    assert _past(now - late, now) == said
