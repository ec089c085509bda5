"""Sample events of every type, every field filled (or every optional one None)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime

from suqiu.domain import events as e
from suqiu.domain.model import Actor, Enterprise, Role
from suqiu.domain.routing import Duplicate, Scored

NOW = datetime(2026, 7, 23, 7, 0, 0, 123000, tzinfo=UTC)


def sample(cls: type[e.EventPayload], *, nones: bool = False) -> e.EventPayload:
    """Every field filled, or with `nones` every optional field None."""
    values: dict[str, typing.Any] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if name == "name":
            continue
        base = str(hint)
        if nones and type(None) in typing.get_args(hint):
            values[name] = None
        elif "Enterprise" in base:
            values[name] = Enterprise("91110000600037341L", "天津某某有限公司", "李明", None)
        elif "datetime" in base:
            values[name] = NOW
        elif "int" in base:
            values[name] = 3
        elif "bytes" in base:
            values[name] = bytes(range(40))
        elif "Scored" in base:
            values[name] = [Scored("bh-market", 0.8125), Scored("bh-hrss", 0.1)]
        elif "Duplicate" in base:
            values[name] = [Duplicate("0b6c1f0e-4f7c-4d8e-9a3b-2d1e0f9a8b7d", 0.93)]
        elif "list" in base:
            values[name] = ["营业执照", "总平面图"]
        else:
            values[name] = f"{name}：中文内容"
    return cls(**values)


def event(cls: type[e.EventPayload], seq: int = 1, *, nones: bool = False) -> e.Event:
    return e.Event(event_id="0b6c1f0e-4f7c-4d8e-9a3b-2d1e0f9a8b7c", case_id="case-1", seq=seq, occurred_at=NOW,
                   recorded_at=NOW, actor=Actor("tj-binhai", Role.DISPATCHER, None, "p1"), command_id="cmd",
                   correlation_id="cor", causation_id="cau", payload=sample(cls, nones=nones))


def avro_record(ev: e.Event, digest: bytes = bytes(32)) -> dict[str, typing.Any]:
    """`ev` as fastavro writes it through the schema with logical types: the reference writer."""
    envelope = {f.name: getattr(ev, f.name) for f in dataclasses.fields(ev) if f.name != "payload"}
    envelope |= {"event_type": ev.event_type, "actor": dataclasses.asdict(ev.actor)}
    return {"envelope": envelope, **dataclasses.asdict(ev.payload), "hash": digest}
