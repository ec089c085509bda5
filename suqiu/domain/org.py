"""A deployment's organisation (机构): the 辖区 tree, its departments and the appeal categories,
read from a file, checked, and compared with the current one as a list of changes.

Codes are forever: a department is never dropped, it is merged into another (合并) or
dissolved (撤销) with a successor, and its old cases keep its code in their events. Every rule
about what a file may say, and what a change is, lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from suqiu.domain.refdata import Category, Department, Jurisdiction

LEVELS = ("city", "district", "zone", "street")
T = TypeVar("T")
_CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class OrgError(Exception):
    """A file that cannot be loaded; `problems` names each thing wrong (nothing was loaded)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Organisation:
    jurisdictions: Mapping[str, Jurisdiction] = field(default_factory=dict)
    departments: Mapping[str, Department] = field(default_factory=dict)
    categories: Mapping[str, Category] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """One versioned change: `kind` (department_added, department_renamed, department_moved,
    department_merged, department_dissolved, jurisdiction_added, jurisdiction_renamed,
    jurisdiction_moved, jurisdiction_dispatcher, category_added, category_renamed,
    category_retired), the code it is about, and what it sets."""

    kind: str
    code: str
    detail: dict[str, Any]

    def describe(self) -> str:
        d = self.detail
        words = {
            "department_added": lambda: f"+ department {self.code} {d['name']} ({d['jurisdiction']})",
            "department_renamed": lambda: f"~ department {self.code}: {d['from']} -> {d['to']}",
            "department_moved": lambda: f"~ department {self.code}: jurisdiction {d['from']} -> {d['to']}",
            "department_merged": lambda: f"> department {self.code} merged into {d['into']}",
            "department_dissolved": lambda: f"x department {self.code} dissolved"
                                            + (f", open cases to {d['successor']}" if d.get("successor") else ""),
            "jurisdiction_added": lambda: f"+ jurisdiction {self.code} {d['name']} ({d['level']}, "
                                          f"under {d['parent'] or '-'})",
            "jurisdiction_renamed": lambda: f"~ jurisdiction {self.code}: {d['from']} -> {d['to']}",
            "jurisdiction_moved": lambda: f"~ jurisdiction {self.code}: under {d['from'] or '-'} -> {d['to'] or '-'}",
            "jurisdiction_dispatcher": lambda: f"~ jurisdiction {self.code}: dispatched by {d['to'] or '-'}",
            "category_added": lambda: f"+ category {self.code} {d['name']}",
            "category_renamed": lambda: f"~ category {self.code}: {d['from']} -> {d['to']}",
            "category_retired": lambda: f"x category {self.code} retired",
        }
        return words[self.kind]()


def parse(doc: Mapping[str, Any]) -> Organisation:
    """The organisation a file describes, with every problem of the file itself named at once."""
    problems: list[str] = []
    unknown = sorted(set(doc) - {"jurisdictions", "departments", "categories"})
    if unknown:
        problems.append(f"{unknown[0]}: unknown section (the file has [[jurisdictions]], [[departments]], "
                        "[[categories]])")
    def jurisdiction(row: Mapping[str, Any], code: str, where: str) -> Jurisdiction:
        level = row.get("level")
        if level not in LEVELS:
            problems.append(f"{where}.level: {level!r} is not one of {', '.join(LEVELS)}")
        return Jurisdiction(code, _name(row, where, problems), str(level), _optional(row, "parent", where, problems),
                            _optional(row, "dispatcher", where, problems))

    def department(row: Mapping[str, Any], code: str, where: str) -> Department:
        return Department(code, _name(row, where, problems), _code(row, "jurisdiction", where, problems),
                          merged_into=_optional(row, "merged_into", where, problems),
                          dissolved=_flag(row, "dissolved", where, problems),
                          successor=_optional(row, "successor", where, problems))

    def category(row: Mapping[str, Any], code: str, where: str) -> Category:
        return Category(code, _name(row, where, problems), _flag(row, "retired", where, problems))

    jurisdictions = _section(doc, "jurisdictions", {"name", "level", "parent", "dispatcher"}, jurisdiction, problems)
    departments = _section(doc, "departments", {"name", "jurisdiction", "merged_into", "dissolved", "successor"},
                           department, problems)
    categories = _section(doc, "categories", {"name", "retired"}, category, problems)
    org = Organisation(jurisdictions, departments, categories)
    problems += check(org)
    if problems:
        raise OrgError(problems)
    return org


def check(org: Organisation) -> list[str]:
    """What makes an organisation unusable: an orphan, a cycle, a reference to nothing."""
    problems: list[str] = []
    tree, depts = org.jurisdictions, org.departments
    if not tree:
        problems.append("jurisdictions: at least one (the root of the tree)")
    roots = [j.code for j in tree.values() if j.parent is None]
    if tree and len(roots) != 1:
        problems.append(f"jurisdictions: exactly one root (no parent) is needed, found {roots or 'none'}")
    for j in tree.values():
        if j.parent is not None and j.parent not in tree:
            problems.append(f"jurisdiction {j.code}: parent {j.parent!r} is not a jurisdiction (an orphan)")
        if j.dispatcher is not None and (j.dispatcher not in depts or not depts[j.dispatcher].active):
            problems.append(f"jurisdiction {j.code}: dispatcher {j.dispatcher!r} is not an active department")
    for code in tree:
        seen: set[str] = set()
        node = tree.get(code)
        while node is not None and node.parent is not None:
            if node.code in seen:
                problems.append(f"jurisdiction {code}: its parents form a cycle ({' -> '.join(sorted(seen))})")
                break
            seen.add(node.code)
            node = tree.get(node.parent)
    for d in depts.values():
        if d.jurisdiction not in tree:
            problems.append(f"department {d.code}: jurisdiction {d.jurisdiction!r} is not in the tree")
        if d.merged_into is not None and d.dissolved:
            problems.append(f"department {d.code}: merged_into or dissolved, not both")
        target = d.merged_into or d.successor
        if d.successor is not None and not d.dissolved:
            problems.append(f"department {d.code}: successor is for a dissolved department")
        if target is not None and (target not in depts or not depts[target].active):
            problems.append(f"department {d.code}: {target!r} is not an active department")
    if not any(c for c in org.categories.values() if not c.retired):
        problems.append("categories: at least one that is not retired")
    return problems


def changes(current: Organisation, proposed: Organisation, open_cases: Mapping[str, int]) -> list[Change]:
    """What loading `proposed` over `current` changes; refused (OrgError) when it would drop a
    code, reuse one, or leave open cases (`open_cases`, per department) with no successor."""
    problems: list[str] = []
    out: list[Change] = []
    problems += _dropped("jurisdiction", current.jurisdictions, proposed.jurisdictions,
                         "keep it, or move what is under it")
    for code, j in proposed.jurisdictions.items():
        was = current.jurisdictions.get(code)
        if was is None:
            out.append(Change("jurisdiction_added", code, {"name": j.name, "level": j.level, "parent": j.parent}))
            if j.dispatcher:
                out.append(Change("jurisdiction_dispatcher", code, {"from": None, "to": j.dispatcher}))
            continue
        if was.level != j.level:
            problems.append(f"jurisdiction {code}: was a {was.level}, the file says {j.level}: a code is not "
                            "reused for something else")
        if was.name != j.name:
            out.append(Change("jurisdiction_renamed", code, {"from": was.name, "to": j.name}))
        if was.parent != j.parent:
            out.append(Change("jurisdiction_moved", code, {"from": was.parent, "to": j.parent}))
        if was.dispatcher != j.dispatcher:
            out.append(Change("jurisdiction_dispatcher", code, {"from": was.dispatcher, "to": j.dispatcher}))
    problems += _dropped("department", current.departments, proposed.departments,
                         "mark it merged_into = \"…\" or dissolved = true")
    for code, d in proposed.departments.items():
        was_d = current.departments.get(code)
        if was_d is None:
            if not d.active:
                problems.append(f"department {code}: a new department cannot be merged or dissolved already")
                continue
            out.append(Change("department_added", code, {"name": d.name, "jurisdiction": d.jurisdiction}))
            continue
        if not was_d.active and d.active:
            problems.append(f"department {code}: was {'merged' if was_d.merged_into else 'dissolved'}; a retired "
                            "code is not reused (give the new department a new code)")
            continue
        if not was_d.active:
            if (was_d.merged_into, was_d.dissolved, was_d.successor) != (d.merged_into, d.dissolved, d.successor):
                problems.append(f"department {code}: already retired; its merge or successor cannot change")
            continue
        if was_d.name != d.name:
            out.append(Change("department_renamed", code, {"from": was_d.name, "to": d.name}))
        if was_d.jurisdiction != d.jurisdiction:
            out.append(Change("department_moved", code, {"from": was_d.jurisdiction, "to": d.jurisdiction}))
        if d.merged_into is not None:
            out.append(Change("department_merged", code, {"into": d.merged_into}))
        elif d.dissolved:
            if open_cases.get(code, 0) and d.successor is None:
                problems.append(f"department {code}: dissolved with {open_cases[code]} open cases and no successor "
                                "(name one: successor = \"…\")")
            out.append(Change("department_dissolved", code, {"successor": d.successor}))
    problems += _dropped("category", current.categories, proposed.categories, "retired = true")
    for code, c in proposed.categories.items():
        was_c = current.categories.get(code)
        if was_c is None:
            out.append(Change("category_added", code, {"name": c.name}))
            if c.retired:
                out.append(Change("category_retired", code, {}))
            continue
        if was_c.retired and not c.retired:
            problems.append(f"category {code}: was retired; a retired code is not reused")
        if was_c.name != c.name:
            out.append(Change("category_renamed", code, {"from": was_c.name, "to": c.name}))
        if c.retired and not was_c.retired:
            out.append(Change("category_retired", code, {}))
    if problems:
        raise OrgError(problems)
    return out


def _dropped(kind: str, current: Mapping[str, Any], proposed: Mapping[str, Any], instead: str) -> list[str]:
    """Codes the database has and the file lacks: never dropped, only retired or moved."""
    return [f"{kind} {code}: missing from the file; codes are never dropped ({instead})"
            for code in current if code not in proposed]


def apply(org: Organisation, change: Change) -> Organisation:
    """The organisation after one change: how `as_of` replays the recorded versions."""
    d, code = change.detail, change.code
    tree, depts, cats = dict(org.jurisdictions), dict(org.departments), dict(org.categories)
    match change.kind:
        case "jurisdiction_added":
            tree[code] = Jurisdiction(code, d["name"], d["level"], d["parent"])
        case "jurisdiction_renamed":
            tree[code] = replace(tree[code], name=d["to"])
        case "jurisdiction_moved":
            tree[code] = replace(tree[code], parent=d["to"])
        case "jurisdiction_dispatcher":
            tree[code] = replace(tree[code], dispatcher=d["to"])
        case "department_added":
            depts[code] = Department(code, d["name"], d["jurisdiction"])
        case "department_renamed":
            depts[code] = replace(depts[code], name=d["to"])
        case "department_moved":
            depts[code] = replace(depts[code], jurisdiction=d["to"])
        case "department_merged":
            depts[code] = replace(depts[code], merged_into=d["into"])
        case "department_dissolved":
            depts[code] = replace(depts[code], dissolved=True, successor=d["successor"])
        case "category_added":
            cats[code] = Category(code, d["name"])
        case "category_renamed":
            cats[code] = replace(cats[code], name=d["to"])
        case "category_retired":
            cats[code] = replace(cats[code], retired=True)
        case _:
            raise ValueError(f"unknown organisation change {change.kind!r}")
    return Organisation(tree, depts, cats)


def to_document(org: Organisation) -> dict[str, Any]:
    """The organisation as a file says it (what `suqiu org show` prints)."""
    def compact(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if v not in (None, False)}

    return {
        "jurisdictions": [compact({"code": j.code, "name": j.name, "level": j.level, "parent": j.parent,
                                   "dispatcher": j.dispatcher}) for j in tree_order(org.jurisdictions)],
        "departments": [compact({"code": d.code, "name": d.name, "jurisdiction": d.jurisdiction,
                                 "merged_into": d.merged_into, "dissolved": d.dissolved, "successor": d.successor})
                        for d in sorted(org.departments.values(), key=lambda d: (d.jurisdiction, d.code))],
        "categories": [compact({"code": c.code, "name": c.name, "retired": c.retired})
                       for c in sorted(org.categories.values(), key=lambda c: c.code)],
    }


def tree_order(tree: Mapping[str, Jurisdiction]) -> list[Jurisdiction]:
    """Parents before children, siblings by code: the order a file is read and written in."""
    children: dict[str | None, list[Jurisdiction]] = {}
    for j in tree.values():
        children.setdefault(j.parent if j.parent in tree else None, []).append(j)
    out: list[Jurisdiction] = []
    todo = sorted(children.get(None, []), key=lambda j: j.code, reverse=True)
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(sorted(children.get(node.code, []), key=lambda j: j.code, reverse=True))
    return out



def _section(doc: Mapping[str, Any], section: str, fields: set[str],
             build: Callable[[Mapping[str, Any], str, str], T], problems: list[str]) -> dict[str, T]:
    """The items of one [[section]] by code: each row's code checked once, unknown fields and
    repeated codes named; `build` makes the item from a row, its code and where it is."""
    rows = doc.get(section, [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        problems.append(f"{section}: a list of tables ([[{section}]])")
        return {}
    allowed = fields | {"code"}
    out: dict[str, T] = {}
    for i, row in enumerate(rows):
        where = f"{section}[{i}]"
        code = _code(row, "code", where, problems)
        for key in sorted(set(row) - allowed):
            problems.append(f"{where}.{key}: unknown field (allowed: {', '.join(sorted(allowed))})")
        if code in out:
            problems.append(f"{where}.code: {code!r} appears twice")
        out[code] = build(row, code, where)
    return out


def _flag(row: Mapping[str, Any], key: str, where: str, problems: list[str]) -> bool:
    value = row.get(key, False)
    if not isinstance(value, bool):
        problems.append(f"{where}.{key}: true or false")
        return False
    return value


def _code(row: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value or len(value) > 64 or not set(value) <= _CODE_CHARS:
        problems.append(f"{where}.{key}: a code of 1 to 64 characters a-z, 0-9, - and _ (got {value!r})")
        return str(value)
    return value


def _optional(row: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str | None:
    return _code(row, key, where, problems) if key in row else None


def _name(row: Mapping[str, Any], where: str, problems: list[str]) -> str:
    value = row.get("name")
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        problems.append(f"{where}.name: a name of 1 to 200 characters")
        return str(value)
    return value.strip()
