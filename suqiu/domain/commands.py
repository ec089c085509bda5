"""Commands: what actors ask for. Parsed from plain dicts (JSON or Avro) with field-named errors."""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import datetime
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from suqiu.domain import inputs
from suqiu.domain.errors import invalid
from suqiu.domain.model import Actor, Enterprise
from suqiu.domain.routing import Duplicate, Scored

if typing.TYPE_CHECKING:
    from suqiu.domain.access import Principal
    from suqiu.domain.model import Case
    from suqiu.domain.personal import Sealed

TEXT = 2000
LONG_TEXT = 20000
SOURCE_SYSTEM_LENGTH = 64  # also the limit of an intake key's source-system bindings


def _text(limit: int = TEXT, *, required: bool = True, added: bool = False) -> Any:
    """A text field of at most `limit` characters. `added`: a field added after commands were first
    stored, hashed for idempotency only when set, so a command sent again matches its first sending."""
    if required:
        return field(metadata={"max": limit, "required": True})
    return field(default="", metadata={"max": limit, "required": False, "added": added})


def hashed_fields(command: Any) -> dict[str, Any]:
    """The command's fields as its idempotency hash covers them (see `_text`'s `added`)."""
    out = {}
    for name, added, default in _hashing(type(command)):
        value = getattr(command, name)
        if not (added and value == default):
            out[name] = value
    return out


_HASHING: dict[type[Any], tuple[tuple[str, bool, Any], ...]] = {}


def _hashing(cls: type[Any]) -> tuple[tuple[str, bool, Any], ...]:
    """(name, added later, default) of each field, once per class: this runs for every command."""
    found = _HASHING.get(cls)
    if found is None:
        found = _HASHING[cls] = tuple((f.name, bool(f.metadata.get("added")), f.default) for f in fields(cls))
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandMeta:
    """The envelope of a command, filled by the shell: who, when, which case, which ids."""

    command_id: str
    case_id: str
    actor: Actor
    issued_at: datetime
    event_ids: tuple[str, ...]
    expected_seq: int | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    # The authenticated key behind `actor`, with what it is bound to (None: the actor alone, unbound).
    principal: Principal | None = None
    # A submit's personal fields as the shell sealed them (the command then holds marks instead).
    personal: Sealed | None = None
    # The other case a command names (merge_into's main case), as the shell read it just before
    # deciding; None when no such case exists.
    related: Case | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Base of all commands; `type` is the name used over HTTP and Kafka."""

    type: ClassVar[str] = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Submit(Command):
    """受理: a new appeal."""

    type: ClassVar[str] = "submit"
    source_system: str = _text(SOURCE_SYSTEM_LENGTH)
    source_ref: str = _text(128)
    enterprise: Enterprise
    channel: str = _text(32)
    category: str = _text(32)
    priority: str = _text(16)
    jurisdiction: str = _text(64)
    title: str = _text(200)
    content: str = _text(LONG_TEXT)
    occurred_at: datetime | None = None
    # The gathering (座谈会, 走访) where it was raised, when it was (suqiu.domain.gatherings).
    gathering: str = _text(64, required=False, added=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportCase(Submit):
    """A historical appeal with its original times (历史数据导入): submitted, and as far as it went."""

    type: ClassVar[str] = "import_case"
    submitted_at: datetime
    department: str = _text(64, required=False)
    replied_at: datetime | None = None
    reply: str = _text(LONG_TEXT, required=False)
    closed_at: datetime | None = None
    outcome: str = _text(32, required=False)
    close_note: str = _text(required=False, added=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch(Command):
    """派单 to a department."""

    type: ClassVar[str] = "dispatch"
    department: str = _text(64)
    note: str = _text(required=False)
    # 责任人: who answers for it in the department, for the account (交账单) of a gathering.
    responsible: str = _text(64, required=False, added=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept(Command):
    """签收 by the assigned department."""

    type: ClassVar[str] = "accept"
    responsible: str = _text(64, required=False, added=True)  # 责任人 named on accepting


@dataclass(frozen=True, slots=True, kw_only=True)
class Return(Command):
    """退回: not this department's matter."""

    type: ClassVar[str] = "return"
    reason: str = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer(Command):
    """转办 to another department."""

    type: ClassVar[str] = "transfer"
    department: str = _text(64)
    reason: str = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestMaterials(Command):
    """补充材料: ask the enterprise for materials; the clock pauses."""

    type: ClassVar[str] = "request_materials"
    items: tuple[str, ...] = ()
    note: str = _text(required=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SupplyMaterials(Command):
    type: ClassVar[str] = "supply_materials"
    note: str = _text(required=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestExtension(Command):
    """延期申请."""

    type: ClassVar[str] = "request_extension"
    working_days: int = field(default=0, metadata={"required": True})
    reason: str = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantExtension(Command):
    type: ClassVar[str] = "grant_extension"


@dataclass(frozen=True, slots=True, kw_only=True)
class DenyExtension(Command):
    type: ClassVar[str] = "deny_extension"
    reason: str = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalate(Command):
    """上报 to an upper-level system."""

    type: ClassVar[str] = "escalate"
    target_system: str = _text(64)
    reason: str = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordUpperLevelReply(Command):
    """The upper-level system's answer (system role: the federation bridge)."""

    type: ClassVar[str] = "upper_level_reply"
    upper_case_id: str = _text(64)
    content: str = _text(LONG_TEXT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply(Command):
    """答复 with the handling result."""

    type: ClassVar[str] = "reply"
    content: str = _text(LONG_TEXT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Close(Command):
    """办结."""

    type: ClassVar[str] = "close"
    outcome: str = _text(32)
    note: str = _text(required=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback(Command):
    """评价 by the enterprise."""

    type: ClassVar[str] = "feedback"
    rating: str = _text(32)
    comment: str = _text(required=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reopen(Command):
    """重办."""

    type: ClassVar[str] = "reopen"
    reason: str = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class Urge(Command):
    """催办."""

    type: ClassVar[str] = "urge"
    note: str = _text(required=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdraw(Command):
    """撤回 by the enterprise."""

    type: ClassVar[str] = "withdraw"
    reason: str = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeInto(Command):
    """并件: close this case as a duplicate of an open main case, whose progress answers for it."""

    type: ClassVar[str] = "merge_into"
    main_case_id: str = _text(64)
    note: str = _text(required=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPersonalErasure(Command):
    """个人信息删除 recorded on a case, by the erasure itself once the subject's key is gone
    (suqiu.service.personal): never from a key, as the record must follow the deletion."""

    type: ClassVar[str] = "record_personal_erasure"
    subject: str = _text(64)
    reason: str = _text(200)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRoutingSuggestion(Command):
    """智能分拨建议, recorded by the routing agent (suqiu.service.routing) as the system actor: the
    model's best categories and departments, and the open cases that look like the same problem."""

    type: ClassVar[str] = "record_routing_suggestion"
    model: str = _text(64)
    categories: tuple[Scored, ...] = ()
    departments: tuple[Scored, ...] = ()
    duplicates: tuple[Duplicate, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSlaWarning(Command):
    """临期预警, issued by the SLA timers."""

    type: ClassVar[str] = "record_sla_warning"
    clock: str = _text(16)
    due_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSlaBreach(Command):
    """超期, issued by the SLA timers."""

    type: ClassVar[str] = "record_sla_breach"
    clock: str = _text(16)
    due_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenSupervision(Command):
    """督办 after a breach stayed open."""

    type: ClassVar[str] = "open_supervision"
    clock: str = _text(16)
    reason: str = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplySlaPolicy(Command):
    """A new SLA policy for an open case, from the moment of change; carries the goals it replaces."""

    type: ClassVar[str] = "apply_sla_policy"
    policy_version: str = _text(64)
    previous_version: str = _text(64)
    previous_accept_minutes: int
    previous_resolve_minutes: int
    previous_follow_up_minutes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviseSlaCalendar(Command):
    """Re-plan an open case's provisional deadlines on the calendar that is now official through a date."""

    type: ClassVar[str] = "revise_sla_calendar"
    official_through: str = _text(10)
    calendar: str = _text()


COMMAND_TYPES: dict[str, type[Command]] = {
    c.type: c
    for c in (
        Submit, Dispatch, Accept, Return, Transfer, RequestMaterials, SupplyMaterials,
        RequestExtension, GrantExtension, DenyExtension, Escalate, RecordUpperLevelReply,
        Reply, Close, Feedback, Reopen, Urge, Withdraw, MergeInto, RecordSlaWarning, RecordSlaBreach,
        OpenSupervision, ApplySlaPolicy, ReviseSlaCalendar, ImportCase, RecordPersonalErasure,
        RecordRoutingSuggestion,
    )
}
# What a key may send on a case; an erasure is recorded by the erasure itself (suqiu.service.erasure),
# a suggestion by the routing agent (suqiu.service.routing).
INTERNAL_TYPES = frozenset({"record_personal_erasure", "record_routing_suggestion"})
LIFECYCLE_TYPES = frozenset(COMMAND_TYPES) - {"submit", "import_case"} - INTERNAL_TYPES


def parse_command(type_name: str, body: typing.Mapping[str, Any]) -> Command:
    """Build a command from a dict, rejecting unknown, missing and mistyped fields by name."""
    cls = COMMAND_TYPES.get(type_name)
    if cls is None:
        raise invalid("type", f"unknown command type {type_name!r}", allowed=sorted(COMMAND_TYPES))
    return typing.cast(Command, _build(cls, body, prefix=""))


def _build(cls: type[Any], body: typing.Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(body, typing.Mapping):
        raise invalid(prefix.rstrip(".") or "body", "must be an object")
    specs, known = _shape(cls)
    if not known.issuperset(body):
        raise invalid(prefix + sorted(set(body) - known)[0], "unknown field", allowed=sorted(known))
    values: dict[str, Any] = {}
    for spec in specs:
        raw = body.get(spec.name)
        if raw is None:
            if spec.required:
                raise invalid(prefix + spec.name, "is required")
            continue
        values[spec.name] = _coerce(spec.hint, raw, prefix + spec.name, spec.meta)
    return cls(**values)


def field_specs(cls: type[Any]) -> tuple[FieldSpec, ...]:
    """How a command class (or Enterprise) is parsed, field by field: for documents of the contract."""
    return _shape(cls)[0]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a command class as parsing needs it: the hint without Optional, and whether required."""

    name: str
    hint: Any
    required: bool
    meta: typing.Mapping[str, Any]


_SHAPES: dict[type[Any], tuple[tuple[FieldSpec, ...], frozenset[str]]] = {}


def _shape(cls: type[Any]) -> tuple[tuple[FieldSpec, ...], frozenset[str]]:
    """Field specs of a command class; resolving annotations is slow (BENCHMARKS.md), so once per class."""
    shape = _SHAPES.get(cls)
    if shape is None:
        hints = get_type_hints(cls)
        specs = []
        for f in fields(cls):
            hint = hints[f.name]
            optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
            if optional:
                hint = next(a for a in get_args(hint) if a is not type(None))
            required = f.metadata.get("required", True) and not optional and not _has_default(f)
            specs.append(FieldSpec(f.name, hint, required, f.metadata))
        shape = _SHAPES[cls] = (tuple(specs), frozenset(s.name for s in specs))
    return shape


def _has_default(f: Any) -> bool:
    # Text fields always carry metadata; other fields are optional only when typed so or
    # defaulting to an empty tuple (a list the caller may omit).
    return f.default is not MISSING and f.default is not None and not f.metadata


def _coerce(hint: Any, raw: Any, path: str, meta: typing.Mapping[str, Any]) -> Any:
    """`raw` as a value of `hint` (Optional already unwrapped), or an error naming `path`."""
    if hint is str:
        return inputs.text(raw, path, meta.get("max", TEXT), required=meta.get("required", True))
    if hint is int:
        return inputs.integer(raw, path)
    if hint is datetime:
        return inputs.instant(raw, path)
    if hint is float:
        return inputs.fraction(raw, path)
    if get_origin(hint) is tuple and is_dataclass(get_args(hint)[0]):  # records (a suggestion's scores)
        if not isinstance(raw, list | tuple) or len(raw) > 10:
            raise invalid(path, "must be a list of at most 10 objects")
        return tuple(_build(get_args(hint)[0], x, prefix=f"{path}[{i}].") for i, x in enumerate(raw))
    if get_origin(hint) is tuple:
        if not isinstance(raw, list | tuple):
            raise invalid(path, "must be a list of non-empty strings")
        if len(raw) > 100:
            raise invalid(path, "more than 100 items")
        return tuple(inputs.text(x, f"{path}[{i}]", TEXT) for i, x in enumerate(raw))
    if isinstance(hint, type) and is_dataclass(hint):  # a record (a submit's enterprise)
        return _build(hint, raw, prefix=path + ".")
    raise TypeError(f"no coercion for {hint!r}")  # a programming error, not bad input
