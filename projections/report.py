"""The monthly report (月度通报) of a jurisdiction as an xlsx workbook (openpyxl), read through
the same query functions and scopes as /v1: department figures beside the previous month's with
the jurisdiction's total, the ranking, the categories, the overdue and supervised cases with
their deadlines, and the definitions; laid out to be printed and sent as it is."""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import psycopg
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.properties import PageSetupProperties
from openpyxl.worksheet.worksheet import Worksheet

from suqiu.base.cells import safe_cell
from suqiu.domain.figures import rate
from suqiu.domain.hotspots import hotspots
from suqiu.domain.labels import CLOCK_NAMES, DEFINITIONS, RATE_NAMES, STATE_NAMES
from suqiu.domain.org import Organisation
from suqiu.domain.periods import Period
from suqiu.domain.refdata import Department, ranked_members, subtree
from suqiu.domain.sla import CHINA
from suqiu.projections import queries

RANKED_BY = "on_time_rate"  # the ranking sheet's order: 按时答复率, as a 月度通报 ranks first
ATTENTION_LIMIT = 500  # overdue and supervised cases listed; the sheet says when there are more
HOTSPOT_LIMIT = 30  # hot issues of the month listed
NONE = "—"  # a rate with no denominator, as 指标说明 says
TOTAL = "合计"
_HEADER = Font(bold=True)
_BOLD = Font(bold=True)
_FILL = PatternFill("solid", fgColor="DDEBF7")
_COUNTS = (("assigned", "派单"), ("replied", "答复"), ("closed", "办结"), ("breached", "超期"))


async def monthly(conn: psycopg.AsyncConnection[Any], org: Organisation, merged_on: Mapping[str, date], code: str,
                  month: Period, now: datetime) -> bytes:
    """The workbook of jurisdiction `code` (its subtree) in `month`: every department that had
    facts in it, retired ones marked, and the total of them all."""
    nodes = subtree(org.jurisdictions, code)
    held = sorted(d.code for d in org.departments.values() if d.jurisdiction in nodes)
    members = ranked_members(org.departments, merged_on, held)
    retired = [d for d in held if not org.departments[d].active]
    previous = month.previous()
    this = {e["department"]: e for e in await queries.ranking(conn, members, now, month, RANKED_BY, retired)}
    before = {e["department"]: e for e in await queries.ranking(conn, members, now, previous, RANKED_BY, retired)}
    total = (await queries.performance(conn, members, now, month), await queries.performance(conn, members, now,
                                                                                              previous))
    codes = [m.code for m in members]
    overdue = await queries.list_cases(conn, now, departments=codes, open_only=True, overdue=True,
                                       order="next_due", limit=ATTENTION_LIMIT + 1)
    supervised = await queries.list_cases(conn, now, departments=codes, open_only=True, supervised=True,
                                          order="next_due", limit=ATTENTION_LIMIT + 1)
    attention = {c["case_id"]: c for c in [*overdue, *supervised]}
    kinds = await queries.categories(conn, nodes, month, now)
    start, end = month.instants()
    assert start is not None and end is not None
    hot = hotspots(await queries.window_appeals(conn, nodes, start, end), limit=HOTSPOT_LIMIT)
    kinds_before = await queries.categories(conn, nodes, previous, now)

    jurisdiction = org.jurisdictions[code]
    dispatcher = org.departments.get(jurisdiction.dispatcher or "")
    unit = dispatcher.name if dispatcher else jurisdiction.name  # 制表单位: who dispatches for the jurisdiction
    label = month.start.strftime("%Y年%m月") if month.start else ""
    title = f"{jurisdiction.name} {label} 企业诉求办理情况通报"
    book = Workbook()
    book.properties.creator = unit
    book.properties.title = title
    names = {c: display_name(org.departments, c) for c in {*this, *before, *held}}
    sheets = [_figures(book.active or book.create_sheet(), title, names, this, before, total)]
    sheets.append(_ranking(book.create_sheet("排名"), title, names, list(this.values())))
    if kinds or kinds_before:
        sheets.append(_categories(book.create_sheet("类别"), title,
                                  {c: k.name for c, k in org.categories.items()}, kinds, kinds_before))
    sheets.append(_hot(book.create_sheet("热点问题"), title, names, hot))
    sheets.append(_attention(book.create_sheet("超期与督办"), title, names, list(attention.values()), now,
                             truncated=len(overdue) > ATTENTION_LIMIT or len(supervised) > ATTENTION_LIMIT))
    sheets.append(_definitions(book.create_sheet("指标说明"), title))
    for sheet in sheets:
        print_setup(sheet, title, unit, now)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def display_name(departments: Mapping[str, Department], code: str) -> str:
    """A department's Chinese name, marked when it has since been merged (已合并) or dissolved (已撤销)."""
    d = departments.get(code)
    if d is None:
        return code
    if d.merged_into is not None:
        return f"{d.name}（已合并）"
    return f"{d.name}（已撤销）" if d.dissolved else d.name


def _cell(value: Any) -> Any:
    return NONE if value is None else value


def _figures(sheet: Worksheet, title: str, names: Mapping[str, str], this: Mapping[str, dict[str, Any]],
             before: Mapping[str, dict[str, Any]], total: tuple[dict[str, Any], dict[str, Any]]) -> Worksheet:
    sheet.title = "部门指标"
    columns = ["部门"]
    for _, word in _COUNTS:
        columns += [f"{word}（本月）", f"{word}（上月）"]
    for name in RATE_NAMES.values():
        columns += [f"{name}（本月）", f"{name}（上月）"]
    columns += ["办理时长中位数·工作小时（本月）", "办理时长中位数·工作小时（上月）",
                "办理时长P90·工作小时（本月）", "办理时长P90·工作小时（上月）", "部门代码"]
    _head(sheet, title, columns)
    codes = sorted({*this, *before}, key=lambda c: (c not in this, names.get(c, c), c))
    rows = [(names.get(c, c), this.get(c, queries.EMPTY), before.get(c, queries.EMPTY), c) for c in codes]
    for name, now_, then, code in [*rows, (TOTAL, *total, "")]:
        row: list[Any] = [name]
        for count, _ in _COUNTS:
            row += [now_["counts"][count], then["counts"][count]]
        for name_of_rate in RATE_NAMES:
            row += [_cell(now_[name_of_rate]), _cell(then[name_of_rate])]
        for point in ("median", "p90"):
            row += [_cell(now_["handling_working_hours"][point]), _cell(then["handling_working_hours"][point])]
        sheet.append([*row, code])
    for cell in sheet[sheet.max_row]:
        cell.font = _BOLD
    first_rate = 2 + 2 * len(_COUNTS)
    _percent(sheet, first_rate, first_rate + 2 * len(RATE_NAMES) - 1)
    _numbers(sheet, 2, len(columns) - 1)
    _widths(sheet, [_name_width(names.values())] + [11] * (len(columns) - 2) + [14])
    return sheet


def _ranking(sheet: Worksheet, title: str, names: Mapping[str, str], entries: list[dict[str, Any]]) -> Worksheet:
    _head(sheet, title, ["名次", "部门", f"{RATE_NAMES[RANKED_BY]}", "答复件数", "按时答复件数",
                         *(RATE_NAMES[r] for r in RATE_NAMES if r != RANKED_BY), "部门代码"])
    for e in entries:  # queries.ranking's order: best first, unranked last
        sheet.append([_cell(e["rank"]), names.get(e["department"], e["department"]), _cell(e[RANKED_BY]),
                      e["counts"]["replied"], e["counts"]["replied_on_time"],
                      *(_cell(e[r]) for r in RATE_NAMES if r != RANKED_BY), e["department"]])
    _percent(sheet, 3, 3)
    _percent(sheet, 6, 5 + len(RATE_NAMES) - 1)
    _numbers(sheet, 1, 5 + len(RATE_NAMES) - 1)
    _widths(sheet, [8, _name_width(names.values()), 14, 10, 12, 12, 12, 12, 12, 14])
    return sheet


def _categories(sheet: Worksheet, title: str, names: Mapping[str, str], this: Mapping[str, dict[str, int]],
                before: Mapping[str, dict[str, int]]) -> Worksheet:
    """受理 by category this month beside last month, busiest first: where the problems are (热点)."""
    _head(sheet, title, ["类别", "受理（本月）", "受理（上月）", "占比（本月）", "其中已办结", "其中超期未办结",
                         "类别代码"])
    whole = sum(k["submitted"] for k in this.values())
    empty = {"submitted": 0, "closed": 0, "overdue": 0}
    codes = sorted({*this, *before}, key=lambda c: (-this.get(c, empty)["submitted"], c))
    for code in codes:
        now_, then = this.get(code, empty), before.get(code, empty)
        share = rate(now_["submitted"], whole)
        sheet.append([names.get(code, code), now_["submitted"], then["submitted"], _cell(share), now_["closed"],
                      now_["overdue"], code])
    sheet.append([TOTAL, whole, sum(k["submitted"] for k in before.values()), 1.0 if whole else NONE,
                  sum(k["closed"] for k in this.values()), sum(k["overdue"] for k in this.values()), ""])
    for cell in sheet[sheet.max_row]:
        cell.font = _BOLD
    _percent(sheet, 4, 4)
    _numbers(sheet, 2, 6)
    _widths(sheet, [_name_width(names.get(c, c) for c in codes), 12, 12, 12, 12, 14, 16])
    return sheet


def _hot(sheet: Worksheet, title: str, names: Mapping[str, str], hot: list[dict[str, Any]]) -> Worksheet:
    """热点问题: the month's appeals grouped by what they are about (suqiu.domain.hotspots), hottest first."""
    _head(sheet, title, ["热点", "企业数", "诉求数", "首件受理", "最近受理", "承办部门", "工单编号"])
    for h in hot:
        sheet.append([safe_cell(h["label"]), h["enterprises"], h["appeals"], _local(h["first"]), _local(h["latest"]),
                      "、".join(f"{names.get(d, d)}（{n}）" for d, n in h["departments"].items()) or "未派单",
                      safe_cell("、".join(c["source_ref"] or c["case_id"] for c in h["cases"][:20]))])
    if not hot:
        sheet.append(["本月无热点问题（相似诉求不足两件）"])
    _numbers(sheet, 2, 3)
    _widths(sheet, [30, 10, 10, 18, 18, 40, 60])
    for cells in sheet.iter_cols(min_col=6, max_col=7, min_row=3):
        for cell in cells:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    return sheet


def _attention(sheet: Worksheet, title: str, names: Mapping[str, str], cases: list[dict[str, Any]],
               now: datetime, truncated: bool) -> Worksheet:
    _head(sheet, title, ["工单编号", "标题", "企业", "承办部门", "状态", "超期时限", "截止时间", "已超期（小时）",
                         "督办", "受理时间", "案件编号"])
    cases.sort(key=lambda c: (not c["supervised"], c["next_due"]))
    for c in cases:
        due = c["next_due"]
        late = round((now - due).total_seconds() / 3600, 1) if due is not None and due <= now else None
        sheet.append([safe_cell(c["source_ref"] or c["case_id"]), safe_cell(c["title"]), safe_cell(c["enterprise_name"]),
                      names.get(c["department"], c["department"]), STATE_NAMES.get(c["status"], c["status"]),
                      CLOCK_NAMES.get(c["next_clock"] or "", ""), _local(due), _cell(late),
                      "是" if c["supervised"] else "否", _local(c["submitted_at"]), c["case_id"]])
    if truncated:
        sheet.append([f"仅列出前 {ATTENTION_LIMIT} 件超期件和前 {ATTENTION_LIMIT} 件督办件，其余见看板或 /v1/appeals"])
    _numbers(sheet, 8, 8)
    _widths(sheet, [24, 30, 28, _name_width(names.values()), 10, 12, 18, 14, 8, 18, 38])
    for cells in sheet.iter_cols(min_col=2, max_col=3, min_row=3):
        for cell in cells:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    return sheet


def _definitions(sheet: Worksheet, title: str) -> Worksheet:
    _head(sheet, title, ["指标", "口径"])
    for name, text in DEFINITIONS.items():
        sheet.append([name, text])
    for cells in sheet.iter_cols(min_col=2, max_col=2, min_row=3):
        for cell in cells:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    _widths(sheet, [14, 90])
    return sheet


def _head(sheet: Worksheet, title: str, columns: list[str]) -> None:
    sheet.append([title])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append(columns)
    for cell in sheet[2]:
        cell.font, cell.fill = _HEADER, _FILL
        cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
    sheet.freeze_panes = "B3"


def print_setup(sheet: Worksheet, title: str, unit: str, now: datetime) -> None:
    """A4 landscape, one page wide, the header rows on every page, who made it and when, page numbers."""
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0
    sheet.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    sheet.print_title_rows = "1:2"
    sheet.print_options.horizontalCentered = True
    header, footer = sheet.oddHeader, sheet.oddFooter
    assert header is not None and footer is not None  # a new sheet has both
    header.center.text = title
    footer.left.text = f"制表单位：{unit}"
    footer.center.text = "第 &P 页，共 &N 页"
    footer.right.text = f"制表日期：{now.astimezone(CHINA):%Y年%m月%d日}"


def _percent(sheet: Worksheet, first: int, last: int) -> None:
    """Rates are fractions: columns `first` to `last` show them as percentages."""
    for cells in sheet.iter_cols(min_col=first, max_col=last, min_row=3):
        for cell in cells:
            cell.number_format = "0.0%"


def _numbers(sheet: Worksheet, first: int, last: int) -> None:
    """Figures sit right, and so does the "—" of a rate with no denominator."""
    for cells in sheet.iter_cols(min_col=first, max_col=last, min_row=3):
        for cell in cells:
            cell.alignment = Alignment(horizontal="right")


def _name_width(names: Any) -> int:
    """A column as wide as its longest name (a CJK character is two widths), within reason."""
    widest = max((sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in n) for n in names), default=10)
    return min(max(widest + 2, 12), 80)


def _widths(sheet: Worksheet, widths: list[int]) -> None:
    for i, width in enumerate(widths, 1):
        sheet.column_dimensions[get_column_letter(i)].width = width


def _local(at: datetime | None) -> str:
    """Asia/Shanghai time as text: a spreadsheet cell has no time zone."""
    return "" if at is None else at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def filename(code: str, month: date) -> str:
    return f"suqiu-{code}-{month:%Y-%m}.xlsx"
