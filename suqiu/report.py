"""The monthly report (月度通报) of a jurisdiction as an xlsx workbook (openpyxl), read through
the same query functions and scopes as /v1: department figures beside the previous month's, the
ranking, the overdue and supervised cases with their deadlines, and the definitions."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from projections import queries
from suqiu.domain.periods import Period
from suqiu.domain.refdata import Department, Jurisdiction, Member
from suqiu.domain.sla import CHINA
from suqiu.labels import CLOCK_NAMES, DEFINITIONS, RATE_NAMES, STATE_NAMES

RANKED_BY = "on_time_rate"  # the ranking sheet's order: 按时答复率, as a 月度通报 ranks first
ATTENTION_LIMIT = 500  # overdue and supervised cases listed; the sheet says when there are more
_HEADER = Font(bold=True)
_FILL = PatternFill("solid", fgColor="DDEBF7")


async def monthly(conn: psycopg.AsyncConnection[Any], jurisdiction: Jurisdiction, members: Sequence[Member],
                  names: Mapping[str, Department], month: Period, now: datetime) -> bytes:
    """The workbook for `members` (the active departments of `jurisdiction`'s subtree, with
    those merged into them) in `month`."""
    this = {e["department"]: e for e in await queries.ranking(conn, members, now, month, RANKED_BY)}
    before = {e["department"]: e for e in await queries.ranking(conn, members, now, month.previous(), RANKED_BY)}
    codes = [m.code for m in members]
    overdue = await queries.list_cases(conn, now, departments=codes, open_only=True, overdue=True,
                                       order="next_due", limit=ATTENTION_LIMIT + 1)
    supervised = await queries.list_cases(conn, now, departments=codes, open_only=True, supervised=True,
                                          order="next_due", limit=ATTENTION_LIMIT + 1)
    attention = {c["case_id"]: c for c in [*overdue, *supervised]}
    book = Workbook()
    label = month.start.strftime("%Y年%m月") if month.start else ""
    title = f"{jurisdiction.name} {label} 企业诉求办理情况通报"
    _figures(book.active or book.create_sheet(), title, sorted(this), names, this, before)
    _ranking(book.create_sheet("排名"), title, names, list(this.values()))
    _attention(book.create_sheet("超期与督办"), title, names, list(attention.values()), now,
               truncated=len(overdue) > ATTENTION_LIMIT or len(supervised) > ATTENTION_LIMIT)
    _definitions(book.create_sheet("指标说明"), now)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _figures(sheet: Worksheet, title: str, members: Sequence[str], names: Mapping[str, Department],
             this: Mapping[str, dict[str, Any]], before: Mapping[str, dict[str, Any]]) -> None:
    sheet.title = "部门指标"
    columns = ["部门代码", "部门名称", "派单（本月）", "派单（上月）", "答复（本月）", "答复（上月）",
               "办结（本月）", "办结（上月）", "超期（本月）", "超期（上月）"]
    for name in RATE_NAMES.values():
        columns += [f"{name}（本月）", f"{name}（上月）"]
    columns += ["办理时长中位数·工作小时（本月）", "办理时长中位数·工作小时（上月）"]
    _head(sheet, title, columns)
    for code in members:
        now_, then = this[code], before[code]
        row: list[Any] = [code, names[code].name if code in names else code]
        for count in ("assigned", "replied", "closed", "breached"):
            row += [now_["counts"][count], then["counts"][count]]
        for rate in RATE_NAMES:
            row += [now_[rate], then[rate]]
        row += [now_["handling_working_hours"]["median"], then["handling_working_hours"]["median"]]
        sheet.append(row)
    _percent(sheet, 11, 10 + 2 * len(RATE_NAMES))
    _widths(sheet, [14, 30] + [12] * (len(columns) - 2))


def _ranking(sheet: Worksheet, title: str, names: Mapping[str, Department], entries: list[dict[str, Any]]) -> None:
    _head(sheet, title, ["名次", "部门代码", "部门名称", f"{RATE_NAMES[RANKED_BY]}", "答复件数", "按时答复件数",
                         *(RATE_NAMES[r] for r in RATE_NAMES if r != RANKED_BY)])
    for e in entries:  # queries.ranking's order: best first, unranked last
        sheet.append([e["rank"] if e["rank"] is not None else "—", e["department"],
                      names[e["department"]].name if e["department"] in names else e["department"], e[RANKED_BY],
                      e["counts"]["replied"], e["counts"]["replied_on_time"],
                      *(e[r] for r in RATE_NAMES if r != RANKED_BY)])
    _percent(sheet, 4, 4)
    _percent(sheet, 7, 6 + len(RATE_NAMES) - 1)
    _widths(sheet, [8, 14, 30, 14, 10, 12, 12, 12, 12, 12])


def _attention(sheet: Worksheet, title: str, names: Mapping[str, Department], cases: list[dict[str, Any]],
               now: datetime, truncated: bool) -> None:
    _head(sheet, title, ["案件编号", "标题", "企业", "承办部门", "状态", "超期时限", "截止时间", "已超期（小时）",
                         "督办", "受理时间"])
    cases.sort(key=lambda c: (not c["supervised"], c["next_due"]))
    for c in cases:
        due = c["next_due"]
        late = round((now - due).total_seconds() / 3600, 1) if due is not None and due <= now else None
        sheet.append([c["case_id"], c["title"], c["enterprise_name"],
                      names[c["department"]].name if c["department"] in names else c["department"],
                      STATE_NAMES.get(c["status"], c["status"]), CLOCK_NAMES.get(c["next_clock"] or "", ""),
                      _local(due), late, "是" if c["supervised"] else "否", _local(c["submitted_at"])])
    if truncated:
        sheet.append([f"仅列出前 {ATTENTION_LIMIT} 件超期件和前 {ATTENTION_LIMIT} 件督办件，其余见看板或 /v1/appeals"])
    _widths(sheet, [38, 30, 28, 28, 10, 12, 18, 14, 8, 18])


def _definitions(sheet: Worksheet, now: datetime) -> None:
    _head(sheet, "指标说明", ["指标", "口径"])
    for name, text in DEFINITIONS.items():
        sheet.append([name, text])
    sheet.append(["生成时间", _local(now)])
    for cells in sheet.iter_cols(min_col=2, max_col=2, min_row=3):
        for cell in cells:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    _widths(sheet, [14, 90])


def _head(sheet: Worksheet, title: str, columns: list[str]) -> None:
    sheet.append([title])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append(columns)
    for cell in sheet[2]:
        cell.font, cell.fill = _HEADER, _FILL
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    sheet.freeze_panes = "A3"


def _percent(sheet: Worksheet, first: int, last: int) -> None:
    """Rates are fractions: columns `first` to `last` show them as percentages."""
    for cells in sheet.iter_cols(min_col=first, max_col=last, min_row=3):
        for cell in cells:
            cell.number_format = "0.0%"


def _widths(sheet: Worksheet, widths: list[int]) -> None:
    for i, width in enumerate(widths, 1):
        sheet.column_dimensions[get_column_letter(i)].width = width


def _local(at: datetime | None) -> str:
    """Asia/Shanghai time as text: a spreadsheet cell has no time zone."""
    return "" if at is None else at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def filename(code: str, month: date) -> str:
    return f"suqiu-{code}-{month:%Y-%m}.xlsx"
