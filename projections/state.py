"""The evolved case as JSON, so a projector can continue from the row it left."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson

from suqiu.domain.model import Case, Enterprise, ProvisionalDeadline, Status, field_names
from suqiu.domain.routing import Duplicate, Routing, Scored

_INSTANTS = frozenset(n for n in field_names(Case) if n.endswith(("_at", "_due")))


def dump_case(case: Case) -> str:
    # orjson writes the dataclass, its enterprise, status and instants itself, without a
    # default hook per instant (see BENCHMARKS.md).
    return orjson.dumps(case, default=_sla_marks).decode()


def _sla_marks(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(list(m) for m in value)
    if isinstance(value, bytes):  # the sealed personal fields: ciphertext, kept as hex
        return value.hex()
    raise TypeError(f"{type(value).__name__} in a case")


def load_case(text: str) -> Case:
    raw = orjson.loads(text)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _INSTANTS and value is not None:
            value = datetime.fromisoformat(value)
        elif name == "enterprise" and value is not None:
            value = Enterprise(**value)
        elif name == "status":
            value = Status(value)
        elif name == "sealed" and value is not None:
            value = bytes.fromhex(value)
        elif name == "sla_marks":
            value = frozenset(tuple(m) for m in value)
        elif name == "routing" and value is not None:
            value = Routing(value["model"], tuple(Scored(**s) for s in value["categories"]),
                            tuple(Scored(**s) for s in value["departments"]),
                            tuple(Duplicate(**d) for d in value["duplicates"]))
        elif name == "provisional":
            value = tuple(ProvisionalDeadline(d["clock"], date.fromisoformat(d["since"]),
                                              datetime.fromisoformat(d["anchor"])) for d in value)
        values[name] = value
    return Case(**values)
