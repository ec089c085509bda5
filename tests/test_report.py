"""The monthly report (月度通报): a real workbook, read back, agreeing with /v1's figures."""

from __future__ import annotations

import asyncio
import functools
import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from suqiu.base.clock import ManualClock
from suqiu.base.config import Settings
from tests.conftest import Api, run_cli
from tests.support.kafka import faust_worker
from tests.support.sla import caught_up, cst, eventually, query

FORMULA = '=HYPERLINK("http://evil.example","园区道路施工许可")'
SHEETS = ["部门指标", "排名", "类别", "热点问题", "超期与督办", "指标说明"]


def _cell(value: Any) -> Any:
    """How the workbook shows a figure: a rate with no denominator as "—"."""
    return "—" if value is None else value


async def _get(api: Api, who: str, path: str) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {api.keys[who]}"}
    async with api.session.get(f"{api.base}/v1{path}", headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


def _table(sheet: Any) -> list[dict[str, Any]]:
    """The sheet's rows under its header (row 2), as dicts."""
    values = list(sheet.iter_rows(values_only=True))
    header = values[1]
    return [dict(zip(header, row, strict=False)) for row in values[2:]]


async def test_the_monthly_report(topics: Settings, api: Api, clock: ManualClock, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    s = topics.with_(timer_interval=0.05)
    async with faust_worker(s, clock):
        clock.set(cst(2026, 6, 10, 10, 0))
        june = (await api.submit(title="六月已办结"))["case_id"]
        await api.ok("dispatcher", june, "dispatch", department="bh-market")
        await api.ok("bh-market", june, "accept")
        await api.ok("bh-market", june, "reply", content="已答复")
        await api.ok("dispatcher", june, "close", outcome="resolved")
        clock.set(cst(2026, 7, 21, 10, 0))
        july = (await api.submit(title="七月已答复"))["case_id"]
        await api.ok("dispatcher", july, "dispatch", department="bh-market")
        await api.ok("bh-market", july, "accept")
        await api.ok("bh-market", july, "reply", content="已答复")
        late = (await api.submit(title=FORMULA))["case_id"]
        await api.ok("dispatcher", late, "dispatch", department="bh-planning")  # to accept by 12:00
        clock.set(cst(2026, 7, 22, 12, 0))
        await eventually(lambda: query(s, "SELECT count(*) FROM events WHERE case_id = %s AND "
                                          "event_type = 'SupervisionOpened'", late)[0][0], lambda n: n == 1)
        for case in (june, july, late):
            await caught_up(s, case)

        status, media, data = await _get(api, "dispatcher", "/jurisdictions/tj/report.xlsx?month=2026-07")
        assert status == 200 and media.startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
        book = openpyxl.load_workbook(io.BytesIO(data))
        assert book.sheetnames == SHEETS
        assert "天津市 2026年07月" in book["部门指标"]["A1"].value

        # Each department's row says what /v1 says for July, beside June; the name comes first.
        table = _table(book["部门指标"])
        assert next(iter(table[0])) == "部门" and list(table[0])[-1] == "部门代码"
        figures = {r["部门代码"]: r for r in table if r["部门"] != "合计"}
        for month, suffix in (("from=2026-07-01&to=2026-08-01", "本月"), ("from=2026-06-01&to=2026-07-01", "上月")):
            status, ranking = await api.call("dispatcher", "GET", f"/jurisdictions/tj/ranking?{month}")
            assert status == 200
            assert set(figures) == {e["department"] for e in ranking["ranking"]}
            for e in ranking["ranking"]:
                row = figures[e["department"]]
                assert row[f"派单（{suffix}）"] == e["counts"]["assigned"]
                assert row[f"答复（{suffix}）"] == e["counts"]["replied"]
                assert row[f"按时答复率（{suffix}）"] == _cell(e["on_time_rate"])
                assert row[f"响应率（{suffix}）"] == _cell(e["response_rate"])
                assert row[f"办理时长中位数·工作小时（{suffix}）"] == _cell(e["handling_working_hours"]["median"])
                assert row[f"办理时长P90·工作小时（{suffix}）"] == _cell(e["handling_working_hours"]["p90"])
                assert row["部门"] == e["name"]
            # The 合计 row is the jurisdiction's own figure, not a sum of rates.
            status, kpis = await api.call("dispatcher", "GET", f"/jurisdictions/tj/kpis?{month}")
            total = next(r for r in table if r["部门"] == "合计")
            for count, word in (("assigned", "派单"), ("replied", "答复"), ("closed", "办结"), ("breached", "超期")):
                assert total[f"{word}（{suffix}）"] == kpis["counts"][count] == sum(
                    r[f"{word}（{suffix}）"] for r in figures.values())
            for rate, word in (("response_rate", "响应率"), ("on_time_rate", "按时答复率"), ("resolution_rate", "解决率")):
                assert total[f"{word}（{suffix}）"] == _cell(kpis[rate])
        assert figures["bh-market"]["派单（本月）"] == 1 and figures["bh-market"]["派单（上月）"] == 1
        assert figures["bh-market"]["解决率（上月）"] == 1.0 and figures["bh-market"]["解决率（本月）"] == "—"
        assert figures["bh-planning"]["响应率（本月）"] == 0.0

        ranked = _table(book["排名"])
        assert ranked[0]["名次"] == 1 and ranked[0]["部门代码"] == "bh-market"  # the only one that replied
        assert all(r["名次"] == "—" for r in ranked[1:])

        kinds = _table(book["类别"])
        assert kinds[-1]["类别"] == "合计" and kinds[-1]["受理（本月）"] == 2 and kinds[-1]["受理（上月）"] == 1

        # Printable as it is: A4 landscape one page wide, headers repeated, who made it, page numbers.
        for sheet in book.worksheets:
            assert sheet.page_setup.orientation == "landscape" and sheet.page_setup.fitToWidth == 1
            assert sheet.sheet_properties.pageSetUpPr.fitToPage and sheet.print_title_rows == "$1:$2"
            assert "制表单位：" in sheet.oddFooter.left.text and "&P" in sheet.oddFooter.center.text
        assert book.properties.creator not in (None, "", "openpyxl")

        # 热点问题: July's two appeals say the same thing (the same content, one enterprise).
        hot = _table(book["热点问题"])
        refs = dict(query(s, "SELECT case_id, source_ref FROM case_view WHERE case_id IN (%s, %s)", july, late))
        assert [(h["企业数"], h["诉求数"]) for h in hot] == [(1, 2)]
        assert set(hot[0]["工单编号"].split("、")) == {refs[july], refs[late]}
        assert hot[0]["承办部门"] == "滨海新区市场监督管理局（1）、滨海新区规划和自然资源局（1）"

        attention = _table(book["超期与督办"])
        assert [r["案件编号"] for r in attention] == [late]
        assert attention[0]["工单编号"] == query(s, "SELECT source_ref FROM case_view WHERE case_id = %s", late)[0][0]
        assert attention[0]["督办"] == "是" and attention[0]["超期时限"] == "签收时限"
        assert attention[0]["截止时间"] == "2026-07-21 12:00" and attention[0]["承办部门"] == "滨海新区规划和自然资源局"
        assert attention[0]["已超期（小时）"] == 24.0
        # What an enterprise typed is text in the workbook, never a formula (CSV/DDE injection).
        title_cell = book["超期与督办"].cell(3, 2)
        assert title_cell.data_type == "s" and title_cell.value == "'" + FORMULA
        terms = {r["指标"] for r in _table(book["指标说明"])}
        assert {"响应率", "按时答复率", "解决率", "满意率", "办理时长"} <= terms

        # The command line writes the same figures.
        assert s.database_url
        monkeypatch.setenv("SUQIU_DATABASE_URL", s.database_url)
        out = tmp_path / "july.xlsx"
        cli = functools.partial(asyncio.to_thread, run_cli)
        assert await cli(["--log-level", "WARNING", "report", "--month", "2026-07", "--jurisdiction", "tj",
                          "--out", str(out)]) == 0
        written = openpyxl.load_workbook(out)
        assert _table(written["部门指标"]) == _table(book["部门指标"])
        assert _table(written["排名"]) == _table(book["排名"])
        assert await cli(["report", "--month", "2026-7", "--jurisdiction", "tj", "--out", str(tmp_path / "x")]) == 2
        assert await cli(["report", "--month", "2026-07", "--jurisdiction", "nowhere", "--out",
                          str(tmp_path / "x")]) == 2
        assert await cli(["report", "--month", "2026-07", "--jurisdiction", "tj", "--out",
                          str(tmp_path / "no-such-dir" / "x.xlsx")]) == 2  # said in a line, no traceback
        assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("who", "query_", "status", "field"), [
    ("dispatcher", "", 400, "month"),
    ("dispatcher", "?month=2026-13", 400, "month"),
    ("dispatcher", "?month=26-07", 400, "month"),
    ("dispatcher", "?month=1900-01", 400, "month"),  # the years any period may name: 2000 to 2199
    ("dispatcher", "?month=2200-01", 400, "month"),
    ("dispatcher", "?month=2026-00", 400, "month"),
    ("dispatcher", "?month=2026-07&from=2026-01-01", 400, "from"),
    ("bh-market", "?month=2026-07", 403, None),
])
async def test_report_refusals(api: Api, who: str, query_: str, status: int, field: str | None) -> None:
    code, body = await api.call(who, "GET", f"/jurisdictions/tj/report.xlsx{query_}")
    assert code == status, body
    assert body["error"]["details"]["field"] == field if field else body["error"]["code"] == "forbidden"
    code, body = await api.call("dispatcher", "GET", "/jurisdictions/nowhere/report.xlsx?month=2026-07")
    assert code == 404
