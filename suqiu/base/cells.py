"""Text cells a spreadsheet opens as text: what a user typed must never run as a formula (CSV/DDE
injection). A cell that starts with = + - @ (or a tab or carriage return, which some programs
skip first) gets a leading apostrophe, which Excel and WPS show as text and do not display."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value` as a cell: text that a spreadsheet would take for a formula is quoted; the rest as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
