"""Whole case histories folded into their final read-model rows, for a rebuild.

The live projector applies events a batch at a time against stored rows; a rebuild sees each
case's history at once, so it keeps only what the last event leaves behind and writes each
row once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from projections import rows
from projections.projector import step
from projections.state import dump_case
from suqiu.domain import events as e
from suqiu.domain.clocks import pending_timers
from suqiu.domain.model import Case
from suqiu.domain.sla import SlaPolicy


@dataclass
class Rows:
    """Rows for the read-model tables, in their column order (jsonb as JSON text)."""

    case_view: list[tuple[Any, ...]] = field(default_factory=list)
    case_timeline: list[tuple[Any, ...]] = field(default_factory=list)
    sla_timers: list[tuple[Any, ...]] = field(default_factory=list)
    assignments: list[tuple[Any, ...]] = field(default_factory=list)
    closures: list[tuple[Any, ...]] = field(default_factory=list)

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        return {"case_view": self.case_view, "case_timeline": self.case_timeline, "sla_timers": self.sla_timers,
                "assignments": self.assignments, "closures": self.closures}

    def __len__(self) -> int:
        return len(self.case_timeline)


def project_history(events: Iterable[e.Event], policy: SlaPolicy, now: datetime, partition: int, out: Rows) -> int:
    """Fold one case's events (from seq 1, in order) into `out`; returns how many were applied."""
    case: Case | None = None
    timeline: list[tuple[Any, ...]] = []
    facts: list[rows.Fact] = []
    for ev in events:
        if case is None:
            case = Case(case_id=ev.case_id)
        case = step(case, ev, timeline, facts, policy)
    if case is None:
        return 0
    pending = pending_timers(case, policy)
    out.case_view.append(rows.case_row(case, pending, dump_case(case), now))
    out.case_timeline.extend(timeline)
    out.sla_timers.extend((case.case_id, t.clock, t.kind, t.fire_at, t.due_at, partition) for t in pending)
    assignments, closures = rows.fold(facts)
    out.assignments.extend(assignments)
    out.closures.extend(closures)
    return len(timeline)
