"""The evolved case as JSON, so a projector can continue from the row it left."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from suqiu.domain.model import Case, Enterprise, Status

_INSTANTS = frozenset(f.name for f in dataclasses.fields(Case) if f.name.endswith(("_at", "_due")))


def dump_case(case: Case) -> str:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(case):
        value = getattr(case, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Enterprise):
            value = dataclasses.asdict(value)
        elif isinstance(value, frozenset):
            value = sorted(list(m) for m in value)
        out[f.name] = value
    return json.dumps(out, ensure_ascii=False)


def load_case(text: str) -> Case:
    raw = json.loads(text)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _INSTANTS and value is not None:
            value = datetime.fromisoformat(value)
        elif name == "enterprise" and value is not None:
            value = Enterprise(**value)
        elif name == "status":
            value = Status(value)
        elif name == "sla_marks":
            value = frozenset(tuple(m) for m in value)
        values[name] = value
    return Case(**values)
