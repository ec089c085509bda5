"""Events: immutable facts. One frozen payload class per Avro record type, one envelope for all."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from suqiu.domain.model import Actor, Enterprise
from suqiu.domain.routing import Duplicate, Scored

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class EventPayload:
    """Base of every event's own fields; the class name is the Avro record name."""

    name: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Event:
    """The envelope every event carries (docs/events.md, 'Envelope')."""

    event_id: str
    case_id: str
    seq: int
    occurred_at: datetime
    recorded_at: datetime
    actor: Actor
    command_id: str
    correlation_id: str
    causation_id: str
    payload: EventPayload
    schema_version: int = SCHEMA_VERSION

    @property
    def event_type(self) -> str:
        return type(self.payload).__name__


@dataclass(frozen=True, slots=True)
class AppealSubmitted(EventPayload):
    """受理."""

    enterprise: Enterprise
    channel: str
    category: str
    priority: str
    jurisdiction: str
    title: str
    content: str
    source_system: str
    source_ref: str
    # Personal fields sealed under the subject's key (suqiu.domain.personal): the contact is
    # then null in `enterprise`, and numbers in the title and content are marks.
    subject: str | None = None
    sealed: bytes | None = None
    # The gathering (座谈会, 走访) where it was raised (suqiu.domain.gatherings).
    gathering: str | None = None


@dataclass(frozen=True, slots=True)
class AppealDispatched(EventPayload):
    """派单, with the deadlines the SLA policy gives."""

    department: str
    note: str | None
    accept_due: datetime
    resolve_due: datetime
    # The clocks whose deadline here lies on provisional days (暂定: no State Council notice yet),
    # and the first such day; a calendar revision re-plans them once the notice is in.
    provisional: list[str] = field(default_factory=list)
    provisional_from: str | None = None
    responsible: str | None = None  # 责任人 in the department, when the dispatcher names one


@dataclass(frozen=True, slots=True)
class AppealAccepted(EventPayload):
    """签收."""

    department: str
    responsible: str | None = None  # 责任人 the department names on accepting


@dataclass(frozen=True, slots=True)
class AppealReturned(EventPayload):
    """退回."""

    department: str
    reason: str


@dataclass(frozen=True, slots=True)
class AppealTransferred(EventPayload):
    """转办: the acceptance clock restarts for the new department, the resolution clock does not."""

    from_department: str
    to_department: str
    reason: str
    accept_due: datetime
    # The clocks whose deadline here lies on provisional days (暂定: no State Council notice yet),
    # and the first such day; a calendar revision re-plans them once the notice is in.
    provisional: list[str] = field(default_factory=list)
    provisional_from: str | None = None


@dataclass(frozen=True, slots=True)
class MaterialsRequested(EventPayload):
    """补充材料: the SLA clock pauses."""

    items: list[str]
    note: str | None


@dataclass(frozen=True, slots=True)
class MaterialsSupplied(EventPayload):
    """The clock resumes; the resolution deadline moves by the business time paused."""

    note: str | None
    paused_from: datetime
    resolve_due: datetime
    # The clocks whose deadline here lies on provisional days (暂定: no State Council notice yet),
    # and the first such day; a calendar revision re-plans them once the notice is in.
    provisional: list[str] = field(default_factory=list)
    provisional_from: str | None = None


@dataclass(frozen=True, slots=True)
class ExtensionRequested(EventPayload):
    """延期申请."""

    working_days: int
    reason: str


@dataclass(frozen=True, slots=True)
class ExtensionGranted(EventPayload):
    working_days: int
    resolve_due: datetime
    # The clocks whose deadline here lies on provisional days (暂定: no State Council notice yet),
    # and the first such day; a calendar revision re-plans them once the notice is in.
    provisional: list[str] = field(default_factory=list)
    provisional_from: str | None = None


@dataclass(frozen=True, slots=True)
class ExtensionDenied(EventPayload):
    reason: str


@dataclass(frozen=True, slots=True)
class AppealEscalated(EventPayload):
    """上报; `upper_case_id` links the case created in the upper-level system, once known."""

    target_system: str
    reason: str
    upper_case_id: str | None


@dataclass(frozen=True, slots=True)
class UpperLevelReplied(EventPayload):
    upper_case_id: str
    content: str


@dataclass(frozen=True, slots=True)
class AppealReplied(EventPayload):
    """答复; starts the follow-up (回访) clock."""

    department: str
    content: str
    follow_up_due: datetime
    # The clocks whose deadline here lies on provisional days (暂定: no State Council notice yet),
    # and the first such day; a calendar revision re-plans them once the notice is in.
    provisional: list[str] = field(default_factory=list)
    provisional_from: str | None = None


@dataclass(frozen=True, slots=True)
class AppealClosed(EventPayload):
    """办结; with `merged_into`, 并件: the case closed as a duplicate of that open case."""

    outcome: str
    note: str | None
    merged_into: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackReceived(EventPayload):
    """评价."""

    rating: str
    comment: str | None


@dataclass(frozen=True, slots=True)
class AppealReopened(EventPayload):
    """重办: back to the last department with a fresh resolution cycle."""

    reason: str
    department: str
    accept_due: datetime
    resolve_due: datetime
    # The clocks whose deadline here lies on provisional days (暂定: no State Council notice yet),
    # and the first such day; a calendar revision re-plans them once the notice is in.
    provisional: list[str] = field(default_factory=list)
    provisional_from: str | None = None


@dataclass(frozen=True, slots=True)
class Urged(EventPayload):
    """催办."""

    note: str | None


@dataclass(frozen=True, slots=True)
class SlaWarning(EventPayload):
    """临期预警."""

    clock: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class SlaBreached(EventPayload):
    """超期; `cause` names what moved the deadline into the past, when it was not time passing."""

    clock: str
    due_at: datetime
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class SupervisionOpened(EventPayload):
    """督办."""

    clock: str
    reason: str


@dataclass(frozen=True, slots=True)
class SlaPolicyApplied(EventPayload):
    """Open clocks take a new policy's goals: each deadline moves by the change in its goal."""

    policy_version: str
    previous_version: str
    accept_due: datetime | None
    resolve_due: datetime | None
    follow_up_due: datetime | None
    # The clocks whose deadline here lies on provisional days (暂定: no State Council notice yet),
    # and the first such day; a calendar revision re-plans them once the notice is in.
    provisional: list[str] = field(default_factory=list)
    provisional_from: str | None = None


@dataclass(frozen=True, slots=True)
class SlaCalendarRevised(EventPayload):
    """The State Council notice came: provisional deadlines re-planned on the official days (日历修订).

    Each moved clock keeps the working time it was walked over the provisional days; the
    previous deadlines stay beside the new ones, and `calendar` says where the official days came from.
    """

    calendar: str
    official_through: str
    previous_accept_due: datetime | None
    previous_resolve_due: datetime | None
    previous_follow_up_due: datetime | None
    accept_due: datetime | None
    resolve_due: datetime | None
    follow_up_due: datetime | None
    provisional: list[str] = field(default_factory=list)
    provisional_from: str | None = None


@dataclass(frozen=True, slots=True)
class PersonalDataErased(EventPayload):
    """个人信息删除: the subject's key is deleted (crypto-shredding); the event names no personal data."""

    subject: str
    reason: str


@dataclass(frozen=True, slots=True)
class RoutingSuggested(EventPayload):
    """智能分拨建议: what the model proposed before dispatch, so an auditor can later compare it with
    what the dispatcher did (suqiu.domain.routing)."""

    model: str
    categories: list[Scored]
    departments: list[Scored]
    duplicates: list[Duplicate]


EVENT_TYPES: dict[str, type[EventPayload]] = {
    c.__name__: c
    for c in (
        AppealSubmitted, AppealDispatched, AppealAccepted, AppealReturned, AppealTransferred,
        MaterialsRequested, MaterialsSupplied, ExtensionRequested, ExtensionGranted,
        ExtensionDenied, AppealEscalated, UpperLevelReplied, AppealReplied, AppealClosed,
        FeedbackReceived, AppealReopened, Urged, SlaWarning, SlaBreached, SupervisionOpened,
        SlaPolicyApplied, SlaCalendarRevised, PersonalDataErased, RoutingSuggested,
    )
}
