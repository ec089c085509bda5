"""A gathering's account (交账单) as an xlsx workbook: each appeal raised there with its department,
责任人, promised date, state, reply and marks, and the summary the host reports back."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from suqiu.base.cells import safe_cell
from suqiu.domain.gatherings import KINDS, Gathering, account_line, account_summary
from suqiu.domain.labels import RATING_NAMES, STATE_NAMES
from suqiu.domain.sla import CHINA
from suqiu.projections.report import print_setup
from suqiu.store import gatherings as gatherings_store

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADERS = ("序号", "工单编号", "诉求", "企业", "承办单位", "责任人", "承诺办结时间", "状态", "答复", "超期", "督办", "评价")
WIDTHS = (6, 20, 30, 24, 18, 10, 16, 9, 40, 6, 6, 9)


async def account(conn: psycopg.AsyncConnection[Any], gathering: Gathering, now: datetime
                  ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The account's lines (each case with its marks) and its summary, as of `now`."""
    lines = [{**c, **account_line(c, now)} for c in await gatherings_store.cases(conn, gathering.gathering_id)]
    return lines, account_summary(lines)


def account_xlsx(gathering: Gathering, lines: Sequence[Mapping[str, Any]], summary: Mapping[str, int],
                 department_name: Callable[[str], str], now: datetime) -> bytes:
    title = f"{gathering.held_on:%Y年%m月%d日} {KINDS[gathering.kind]}「{gathering.title}」诉求办理交账单"
    book = Workbook()
    book.properties.creator = gathering.host
    book.properties.title = title
    sheet = book.active or book.create_sheet()
    sheet.title = "交账单"
    sheet.append([safe_cell(title)])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([safe_cell(f"主办：{gathering.host}　　合计 {summary['appeals']} 件，已答复 {summary['answered']} 件"
                            f"（按期 {summary['on_time']} 件），超期 {summary['overdue']} 件，评价 {summary['rated']} 件"
                            f"（满意及基本满意 {summary['satisfied']} 件）")])
    sheet.append(list(HEADERS))
    for cell in sheet[3]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center", wrap_text=True)
    for i, case in enumerate(lines, 1):
        due = case["resolve_due"]
        sheet.append([
            i, safe_cell(case["source_ref"] or case["case_id"]), safe_cell(case["title"]),
            safe_cell(case["enterprise_name"]), safe_cell(department_name(case["department"]) if case["department"]
                                                          else "—"),
            safe_cell(case["responsible"] or "—"), due.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if due else "—",
            STATE_NAMES.get(case["status"], case["status"]), safe_cell(case["reply"] or "—"),
            "是" if case["overdue"] else "", "是" if case["supervised"] else "",
            RATING_NAMES.get(case["rating"] or "", "—"),
        ])
    for col, width in enumerate(WIDTHS, 1):
        sheet.column_dimensions[chr(ord("A") + col - 1)].width = width
    for row in sheet.iter_rows(min_row=4):
        for cell in row:
            cell.alignment = Alignment(vertical="top", wrap_text=True)
    print_setup(sheet, title, gathering.host, now)
    sheet.print_title_rows = "3:3"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
