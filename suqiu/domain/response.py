"""响应: how a department's duty to respond to an assignment ends, for the response rate (响应率).

An assignment (派单, 转办, 重办) asks its department to respond by the accept deadline. The
department responds by 签收 (accept) or by 退回 (return): a return within the limit is a
timely response, as the 12345 performance rules read 响应率. An assignment that ends without a
response of its department is released from the count when the department had no chance to be
late: the case was taken away (transferred, withdrawn, closed) before the deadline, or the
system moved it in a reorganisation (机构改革), which counts against nobody whenever it comes.
Taken away after the deadline, it was late, and stays so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from suqiu.domain import events as e
from suqiu.domain.model import Case, Role, Status


class Ending(StrEnum):
    RESPONDED = "responded"  # 签收 or 退回 by the department
    RELEASED = "released"  # not counted: taken away before it was due, or by a reorganisation


@dataclass(frozen=True, slots=True)
class AssignmentEnd:
    """How the case's current assignment ended, and when; `on_time` for a response by its deadline."""

    ending: Ending
    department: str
    assigned_at: datetime
    accept_due: datetime
    at: datetime

    @property
    def released(self) -> bool:
        return self.ending is Ending.RELEASED

    @property
    def on_time(self) -> bool:
        return self.ending is Ending.RESPONDED and self.at <= self.accept_due


def assignment_end(before: Case, ev: e.Event) -> AssignmentEnd | None:
    """The end `ev` puts to `before`'s assignment still awaiting its response, if it does."""
    if before.status is not Status.DISPATCHED or before.department is None:
        return None  # no assignment awaits a response: not dispatched, or already accepted
    assert before.assigned_at is not None and before.accept_due is not None
    at = ev.occurred_at
    match ev.payload:
        case e.AppealAccepted() | e.AppealReturned():
            ending = Ending.RESPONDED
        case e.AppealTransferred() if ev.actor.role is Role.SYSTEM:
            ending = Ending.RELEASED
        case e.AppealClosed(merged_into=str()):  # 并件: the main case's response is the one that counts
            ending = Ending.RELEASED
        case e.AppealTransferred() | e.AppealClosed() if at < before.accept_due:  # a withdrawal closes
            ending = Ending.RELEASED
        case _:
            return None
    return AssignmentEnd(ending, before.department, before.assigned_at, before.accept_due, at)
