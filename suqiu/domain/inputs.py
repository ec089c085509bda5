"""What any input must be before it becomes a command: text, ids, JSON shape, numbers, instants.

One validator for every boundary (HTTP, Kafka, CSV import): each refusal is an `invalid_input`
naming the field and the rule, raised before anything is stored. PostgreSQL cannot store a NUL
in text or jsonb, and a lone surrogate cannot be encoded at all, so both are refused here
rather than found by the database (or by a read model, long after the command was accepted).
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from datetime import datetime, timedelta
from typing import Any

from suqiu.domain.errors import invalid

ID_MAX = 128  # a field this short is a code or an id: one line, no control character at all
MAX_DEPTH = 32
INT64 = 2**63
EXPECTED_SEQ_MAX = 2**31
FIRST_YEAR, LAST_YEAR = 2000, 2100
CLOCK_SKEW = timedelta(minutes=10)  # how far a sender's clock may run ahead of ours

# Unicode category Cc: C0, DEL and C1. Free text may hold tab and newline (and CR, as in CRLF).
# As regular-expression character ranges, which JSON Schema patterns read the same way.
CONTROL_IN_ID = r"\x00-\x1f\x7f-\x9f"
CONTROL_IN_TEXT = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_CONTROL_IN_TEXT = re.compile(f"[{CONTROL_IN_TEXT}]")
_CONTROL_IN_ID = re.compile(f"[{CONTROL_IN_ID}]")


def text(value: Any, path: str, limit: int, *, required: bool = True) -> str:
    """`value` as stored text: NFC-normalised UTF-8, stripped, within `limit` characters.

    Up to ID_MAX characters it is a code or an id and holds no control character; longer
    fields are free text, where tab and newline are allowed.
    """
    if not isinstance(value, str):
        raise invalid(path, "must be a string")
    return _clean(value, path, limit, required)


def _clean(value: str, path: str, limit: int, required: bool) -> str:
    # ASCII is valid UTF-8 and already NFC: codes, ids and dates skip both checks.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(path, "is not valid UTF-8 (a lone surrogate)", rule="UTF-8 text") from None
        if not unicodedata.is_normalized("NFC", value):
            value = unicodedata.normalize("NFC", value)
    control = (_CONTROL_IN_ID if limit <= ID_MAX else _CONTROL_IN_TEXT).search(value)
    if control is not None:
        allowed = "none" if limit <= ID_MAX else "tab and newline only"
        raise invalid(path, f"holds the control character U+{ord(control.group()):04X} (allowed: {allowed})",
                      rule="no control characters")
    value = value.strip()
    if required and not value:
        raise invalid(path, "must not be empty")
    if len(value) > limit:
        raise invalid(path, f"longer than {limit} characters", limit=limit)
    return value


def identifier(value: Any, path: str) -> str:
    """A client-chosen id (command_id, case_id, a correlation id): one line of at most ID_MAX characters."""
    return text(value, path, ID_MAX)


def uuid_text(value: Any, path: str) -> str:
    """A UUID in its canonical lower-case form (a data subject's id)."""
    text_value = identifier(value, path)
    try:
        return str(uuid.UUID(text_value))
    except ValueError:
        raise invalid(path, "must be a UUID", value=text_value[:64]) from None


def integer(value: Any, path: str, low: int = -INT64, high: int = INT64 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(path, "must be an integer")
    if not low <= value <= high:
        raise invalid(path, f"must be between {low} and {high}", rule="integer range")
    return value


def fraction(value: Any, path: str) -> float:
    """A share or a score between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise invalid(path, "must be a number from 0 to 1")
    return float(value)


def expected_seq(value: Any) -> int | None:
    """The optimistic-concurrency guard: the case's seq the client saw, if it sends one."""
    return None if value is None else integer(value, "expected_seq", 1, EXPECTED_SEQ_MAX)


def json_shape(value: Any, path: str = "") -> None:
    """Nesting at most MAX_DEPTH deep and every number an int64 or a finite float.

    A refusal names the path to the value (`enterprise.name`, `items[2]`), or `body` for the whole.
    """
    stack: list[tuple[Any, int, str]] = [(value, 1, path)]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise invalid(where or "body", f"nested deeper than {MAX_DEPTH} levels", rule="JSON depth")
            pairs = item.items() if isinstance(item, dict) else ((f"[{i}]", v) for i, v in enumerate(item))
            for key, v in pairs:
                step = key if isinstance(item, list) else (f"{where}.{key}" if where else str(key))
                stack.append((v, depth + 1, f"{where}{step}" if isinstance(item, list) else step))
        elif isinstance(item, int) and not isinstance(item, bool) and not -INT64 <= item < INT64:
            raise invalid(where or "body", "holds an integer outside int64", rule="integer range")
        elif isinstance(item, float) and not math.isfinite(item):
            raise invalid(where or "body", "holds a number that is not finite", rule="finite numbers")


def as_of(raw: Any, path: str) -> datetime:
    """An instant, or an ISO date standing for the end of that day in Beijing time (what `as_of`
    means to someone asking how things stood on a day)."""
    if isinstance(raw, str) and "T" not in raw:
        raw = f"{raw}T23:59:59.999+08:00"
    return instant(raw, path)


def instant(raw: Any, path: str) -> datetime:
    """An ISO 8601 instant with an explicit offset, in the years FIRST_YEAR to LAST_YEAR."""
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, str):
        try:
            value = datetime.fromisoformat(text(raw, path, 64))
        except ValueError:
            raise invalid(path, "is not an ISO 8601 date-time") from None
    else:
        raise invalid(path, "must be an ISO 8601 date-time string")
    if value.tzinfo is None:
        raise invalid(path, "needs a UTC offset, e.g. +08:00")
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise invalid(path, f"year {value.year} is outside {FIRST_YEAR}-{LAST_YEAR}", rule="date range")
    # Events carry millisecond instants (Avro timestamp-millis); truncate once, here.
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
