"""Reference data the decider consults: departments, jurisdictions, the SLA policy."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date

from suqiu.domain.sla import SlaPolicy


@dataclass(frozen=True, slots=True)
class Department:
    """A department (承办单位); a retired one is merged into another or dissolved, and keeps its code."""

    code: str
    name: str
    jurisdiction: str
    merged_into: str | None = None
    dissolved: bool = False
    successor: str | None = None  # a dissolved department's open cases went there

    @property
    def active(self) -> bool:
        return self.merged_into is None and not self.dissolved


@dataclass(frozen=True, slots=True)
class Category:
    """An appeal category (诉求类别) of the deployment; a retired one takes no new appeals."""

    code: str
    name: str
    retired: bool = False


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """A node of the 辖区 tree: city > district > zone > street."""

    code: str
    name: str
    level: str
    parent: str | None
    dispatcher: str | None = None  # the department that dispatches (派单) for it, when there is one


@dataclass(frozen=True, slots=True)
class Context:
    """Everything decide needs beyond the case and the command."""

    policy: SlaPolicy
    departments: Mapping[str, Department] = field(default_factory=dict)
    jurisdictions: Mapping[str, Jurisdiction] = field(default_factory=dict)
    categories: Mapping[str, Category] = field(default_factory=dict)
    merged_on: Mapping[str, date] = field(default_factory=dict)  # a merged department: the day it was merged


def departments_in(departments: Mapping[str, Department], jurisdictions: Collection[str], *,
                   active: bool = False) -> list[str]:
    """The codes of the departments of `jurisdictions` (a subtree's, for its figures), sorted;
    with `active`, only those not merged or dissolved."""
    return sorted(d.code for d in departments.values() if d.jurisdiction in jurisdictions and (d.active or not active))


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


def current(departments: Mapping[str, Department], code: str | None) -> str | None:
    """The department that answers for `code` today: itself, or the end of its merge chain."""
    seen: set[str] = set()
    while code is not None and code in departments and departments[code].merged_into and code not in seen:
        seen.add(code)
        code = departments[code].merged_into
    return code


def members(departments: Mapping[str, Department], merged_on: Mapping[str, date],
            codes: Collection[str]) -> list[Member]:
    """Whose daily facts make up the figures of `codes`: each code itself, all its history, and
    every department merged into it (through the chain) from the day of its merge (合并后并入
    承接部门的统计)."""
    out: dict[str, Member] = {}
    merged_into: dict[str, list[str]] = {}
    for d in departments.values():
        if d.merged_into:
            merged_into.setdefault(d.merged_into, []).append(d.code)
    for code in codes:
        out[code] = Member(code, code, None)
        todo = [(m, code) for m in merged_into.get(code, [])]
        while todo:
            merged, owner = todo.pop()
            since = merged_on.get(merged)
            known = out.get(merged)
            if known is None or (known.since is not None and since is not None and since < known.since):
                out[merged] = Member(merged, owner, since)
            todo.extend((m, owner) for m in merged_into.get(merged, []))
    return sorted(out.values(), key=lambda m: m.code)


def ranked_members(departments: Mapping[str, Department], merged_on: Mapping[str, date],
                   codes: Collection[str]) -> list[Member]:
    """Whose facts make up each row of a ranking or a report over `codes` (a subtree's
    departments, retired ones included): an active department with what was merged into it
    from the merge day, and a merged department alone before its merge day (已合并), so that a
    period's rows add up to the jurisdiction whatever the organisation is today. A dissolved
    department keeps all its facts: nothing rolls up into a successor of a dissolution."""
    out: list[Member] = []
    for code in sorted(codes):
        d = departments.get(code)
        if d is None or d.active:
            out.extend(members(departments, merged_on, [code]))
        elif d.merged_into is not None:
            out.append(Member(code, code, None, merged_on.get(code)))
        else:
            out.append(Member(code, code, None))
    return out


@dataclass(frozen=True, slots=True)
class Member:
    """A department whose facts count in `owner`'s figures from `since` until before `until`
    (None: no bound on that side)."""

    code: str
    owner: str
    since: date | None
    until: date | None = None
