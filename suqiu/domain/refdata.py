"""Reference data the decider consults: departments, jurisdictions, the SLA policy."""

from __future__ import annotations

from collections.abc import Collection, Mapping
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


def departments_in(departments: Mapping[str, Department], jurisdictions: Collection[str]) -> list[str]:
    """The codes of the departments of `jurisdictions` (a subtree's, for its figures), sorted."""
    return sorted(d.code for d in departments.values() if d.jurisdiction in jurisdictions)


def subtree(tree: Mapping[str, Jurisdiction], root: str) -> set[str]:
    """`root` and every node under it in the 辖区 tree."""
    children: dict[str | None, list[str]] = {}
    for j in tree.values():
        children.setdefault(j.parent, []).append(j.code)
    out, todo = set(), [root]
    while todo:
        node = todo.pop()
        out.add(node)
        todo.extend(children.get(node, []))
    return out


def ancestors(tree: Mapping[str, Jurisdiction], code: str) -> list[str]:
    """`code` and every node above it, nearest first (a cycle in bad data ends the walk)."""
    out, seen = [], set()
    node: str | None = code
    while node is not None and node not in seen:
        seen.add(node)
        out.append(node)
        parent = tree.get(node)
        node = parent.parent if parent else None
    return out
