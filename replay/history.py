"""One case's history as an auditor reads it, and the case as it stood at any instant or seq."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from suqiu.base.cells import safe_cell
from suqiu.domain import events as e
from suqiu.domain.clocks import sla_status
from suqiu.domain.evolve import replay_state
from suqiu.domain.model import Case
from suqiu.domain.personal import labelled, unopened_contact
from suqiu.domain.sla import CHINA
from suqiu.schemas.codec import Codec, to_json_value

REASON_FIELDS = ("reason", "note", "content", "comment")
DEADLINE_FIELDS = ("accept_due", "resolve_due", "follow_up_due", "due_at")
CSV_COLUMNS = ("case_id", "seq", "time_cst", "time_utc", "event", "actor_system", "actor_role", "actor_department",
               "actor_person", "reason", "deadlines", "sla", "hash")


@dataclass(frozen=True, slots=True)
class Stored:
    """An event as stored: the decoded event and the hash it carries."""

    event: e.Event
    hash: bytes


MIN_PREFIX = 6  # a case id's shortest unique beginning a user may give (the board shows 8)


def find_case(conn: psycopg.Connection[Any], ref: str) -> list[str]:
    """The cases `ref` names: a whole case id, a source's 工单编号 (source_ref, in any system), or
    the beginning of a case id at least MIN_PREFIX characters long. More than one: ambiguous."""
    if conn.execute("SELECT 1 FROM events WHERE case_id = %s AND seq = 1", (ref,)).fetchone():
        return [ref]
    found = [r[0] for r in conn.execute("SELECT case_id FROM source_refs WHERE source_ref = %s ORDER BY case_id LIMIT 5",
                                        (ref,))]
    if found or len(ref) < MIN_PREFIX:
        return found
    # A range the (case_id, seq) index can walk: from the prefix to the next one.
    upper = ref[:-1] + chr(ord(ref[-1]) + 1)
    return [r[0] for r in conn.execute("SELECT case_id FROM events WHERE case_id >= %s AND case_id < %s AND seq = 1 "
                                       "ORDER BY case_id LIMIT 5", (ref, upper))]


def load(conn: psycopg.Connection[Any], codec: Codec, case_id: str) -> list[Stored]:
    rows = conn.execute("SELECT data FROM events WHERE case_id = %s ORDER BY seq", (case_id,)).fetchall()
    return [stored(codec, bytes(r[0])) for r in rows]


def stored(codec: Codec, data: bytes) -> Stored:
    """An event's stored bytes, decoded, with the hash they end in."""
    return Stored(codec.decode_event(data), data[-32:])


def entry(s: Stored) -> dict[str, Any]:
    """One line of the history: time in both zones, event, actor, reason, deadlines, SLA outcome."""
    ev, p = s.event, s.event.payload
    fields = dataclasses.asdict(p)
    reason = next((str(fields[f]) for f in REASON_FIELDS if fields.get(f)), "")
    if isinstance(p, e.AppealSubmitted):
        reason = labelled(p.title)
    extra = {k: v for k, v in fields.items() if k in ("department", "to_department", "outcome", "rating", "items",
                                                       "working_days", "target_system", "responsible")
             or (v and k in ("provisional", "provisional_from", "calendar", "cause"))}
    deadlines = {k: fields[k] for k in DEADLINE_FIELDS if fields.get(k) is not None}
    sla = ""
    if isinstance(p, e.SlaWarning | e.SlaBreached | e.SupervisionOpened):
        sla = f"{p.clock}: {ev.event_type}"
    return {
        "case_id": ev.case_id, "seq": ev.seq, "event_id": ev.event_id, "event": ev.event_type,
        "time_cst": ev.occurred_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " +08:00",
        "time_utc": to_json_value(ev.occurred_at), "recorded_utc": to_json_value(ev.recorded_at),
        "actor": {"system": ev.actor.system, "role": ev.actor.role.value, "department": ev.actor.department,
                  "person": ev.actor.person},
        "reason": reason, "details": to_json_value(extra), "deadlines": to_json_value(deadlines), "sla": sla,
        "command_id": ev.command_id, "hash": s.hash.hex(),
    }


def as_of(history: Sequence[Stored], *, at: datetime | None = None, seq: int | None = None) -> Case:
    """The case built from the events recorded up to `at` (or up to `seq`): what the system knew then."""
    chosen = [s.event for s in history
              if (seq is None or s.event.seq <= seq) and (at is None or s.event.recorded_at <= at)]
    return replay_state(history[0].event.case_id if history else "", chosen)


def case_json(case: Case, at: datetime) -> dict[str, Any]:
    out = to_json_value(dataclasses.asdict(case))
    del out["sealed"]  # no key at hand here: the sealed fields are named, never shown
    out["title"] = labelled(case.title)
    if case.enterprise is not None:
        ent = case.enterprise
        out["enterprise"] = {"uscc": ent.uscc, "name": ent.name, **unopened_contact(
            ent.contact_name, ent.contact_phone, case.sealed is not None, case.personal_erased)}
    out["status"] = case.status.value
    out["sla_marks"] = sorted(f"{c}:{k}" for c, k in case.sla_marks)
    out["sla_status"] = sla_status(case, at) if case.seq else "none"
    out["provisional_deadlines"] = [d.clock for d in case.provisional]
    return dict(out)


def to_jsonl(entries: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in entries)


def to_csv(entries: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for x in entries:
        a = x["actor"]
        w.writerow([safe_cell(v) for v in (
            x["case_id"], x["seq"], x["time_cst"], x["time_utc"], x["event"], a["system"], a["role"],
            a["department"] or "", a["person"] or "", x["reason"],
            " ".join(f"{k}={v}" for k, v in x["deadlines"].items()), x["sla"], x["hash"])])
    return buf.getvalue()
