"""Reference data the decider consults: departments, jurisdictions, the SLA policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from suqiu.domain.sla import SlaPolicy


@dataclass(frozen=True, slots=True)
class Department:
    code: str
    name: str
    jurisdiction: str


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """A node of the 辖区 tree: city > district > zone > street."""

    code: str
    name: str
    level: str
    parent: str | None


@dataclass(frozen=True, slots=True)
class Context:
    """Everything decide needs beyond the case and the command."""

    policy: SlaPolicy
    departments: Mapping[str, Department] = field(default_factory=dict)
    jurisdictions: Mapping[str, Jurisdiction] = field(default_factory=dict)
