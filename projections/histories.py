"""Whole case histories folded into their final read-model rows, for a rebuild.

The live projector applies events a batch at a time against stored rows; a rebuild sees each
case's history at once, so it keeps only what the last event leaves behind and writes each
row once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from suqiu.domain import events as e
from suqiu.domain.model import Case
from suqiu.domain.sla import SlaPolicy
from suqiu.projections import rows
from suqiu.projections.projector import step, view_rows


@dataclass
class Rows:
    """Rows for the read-model tables, in their column order (jsonb as JSON text)."""

    case_view: list[tuple[Any, ...]] = field(default_factory=list)
    case_timeline: list[tuple[Any, ...]] = field(default_factory=list)
    sla_timers: list[tuple[Any, ...]] = field(default_factory=list)
    assignments: list[tuple[Any, ...]] = field(default_factory=list)
    closures: list[tuple[Any, ...]] = field(default_factory=list)
    replies: list[tuple[Any, ...]] = field(default_factory=list)
    # Per case, so a (department, day) repeats across cases: the rebuild sums them once copied.
    department_days: list[tuple[Any, ...]] = field(default_factory=list)

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __len__(self) -> int:
        return len(self.case_timeline)


def project_history(events: Iterable[e.Event], policy: SlaPolicy, now: datetime,
                    partition_of: Callable[[str], int], out: Rows) -> int:
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
    view, timers = view_rows(case, policy, now, partition_of)
    out.case_view.append(view)
    out.case_timeline.extend(timeline)
    out.sla_timers.extend(timers)
    assignments, closures, replies = rows.fold(facts)
    out.assignments.extend(assignments)
    out.closures.extend(closures)
    out.replies.extend(replies)
    out.department_days.extend(rows.day_rows(facts))
    return len(timeline)
