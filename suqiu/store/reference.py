"""The organisation in PostgreSQL: read it, load a new version in one transaction, and answer
for a past date by replaying the recorded versions. The shipped Tianjin-like seed is
suqiu/org/tianjin.toml, loaded like any other file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from typing import Any

import psycopg

from suqiu.base import tomlfile
from suqiu.domain import org
from suqiu.domain.org import Change, Organisation, OrgError
from suqiu.domain.refdata import Category, Department, Jurisdiction
from suqiu.domain.sla import CHINA

SEED = "tianjin.toml"
LOCK_ID = 0x5351_0004  # one organisation load at a time per schema


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a load did: the new version (None when the file changed nothing) and its changes."""

    version: int | None
    changes: list[Change]


def read_document(text: str, source: str) -> Organisation:
    try:
        doc = tomlfile.parse(text)
    except tomlfile.TomlError as exc:
        raise OrgError([f"{source}: {exc}"]) from None
    return org.parse(doc)


def seed_document() -> str:
    return (resources.files("suqiu") / "org" / SEED).read_text("utf-8")


# The organisation now, and the day each merged department was merged (for the figures).
CURRENT_SQL = ("SELECT code, name, level, parent, dispatcher FROM jurisdictions",
               "SELECT code, name, jurisdiction, merged_into, dissolved, successor FROM departments",
               "SELECT code, name, retired FROM categories",
               "SELECT c.code, v.loaded_at FROM org_changes c JOIN org_versions v USING (version) "
               "WHERE c.kind = 'department_merged'")
VERSION_SQL = "SELECT coalesce(max(version), 0) FROM org_versions"


@dataclass(frozen=True, slots=True)
class Current:
    organisation: Organisation
    merged_on: dict[str, date]
    version: int


def _build(found: list[list[tuple[Any, ...]]], number: int) -> Current:
    tree_rows, dept_rows, cat_rows, merge_rows = found
    return Current(Organisation({r[0]: Jurisdiction(*r) for r in tree_rows},
                                {r[0]: Department(*r) for r in dept_rows},
                                {r[0]: Category(*r) for r in cat_rows}),
                   {code: at.astimezone(CHINA).date() for code, at in merge_rows}, number)


def current(conn: psycopg.Connection[Any]) -> Organisation:
    return read(conn).organisation


def read(conn: psycopg.Connection[Any]) -> Current:
    number = version(conn)
    return _build([conn.execute(q).fetchall() for q in CURRENT_SQL], number)


async def read_async(conn: psycopg.AsyncConnection[Any]) -> Current:
    """As read(), for a process's event loop (the API and the workers refresh with it)."""
    number = await version_async(conn)
    found = []
    for query in CURRENT_SQL:
        cur = await conn.execute(query)
        found.append(await cur.fetchall())
    return _build(found, number)


def version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(VERSION_SQL).fetchone()
    return int(row[0]) if row else 0


async def version_async(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute(VERSION_SQL)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def open_cases(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in conn.execute(
        "SELECT department, count(*) FROM case_view WHERE department IS NOT NULL "
        "AND status NOT IN ('closed', 'withdrawn') GROUP BY 1")}


def load(conn: psycopg.Connection[Any], proposed: Organisation, document: str, source: str, by: str,
         now: datetime, *, dry_run: bool = False) -> Loaded:
    """Load `proposed` as the next version, in one transaction; refused (OrgError) with nothing
    changed when the file would drop or reuse a code or strand open cases."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (LOCK_ID,))
        changes = org.changes(current(conn), proposed, open_cases(conn))
        if not changes or dry_run:
            return Loaded(None, changes)
        number = version(conn) + 1
        conn.execute("INSERT INTO org_versions (version, loaded_at, loaded_by, source, document) "
                     "VALUES (%s, %s, %s, %s, %s)", (number, now, by, source, document))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO org_changes (version, seq, kind, code, detail) VALUES (%s, %s, %s, %s, %s)",
                            [(number, i, c.kind, c.code, json.dumps(c.detail, ensure_ascii=False))
                             for i, c in enumerate(changes, 1)])
            # Parents first, so each row's references exist when it is written.
            cur.executemany(
                "INSERT INTO jurisdictions (code, name, level, parent, dispatcher) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, parent = EXCLUDED.parent, "
                "dispatcher = EXCLUDED.dispatcher",
                [(j.code, j.name, j.level, j.parent, j.dispatcher) for j in org.tree_order(proposed.jurisdictions)])
            cur.executemany(
                "INSERT INTO departments (code, name, jurisdiction, merged_into, dissolved, successor) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, "
                "jurisdiction = EXCLUDED.jurisdiction, merged_into = EXCLUDED.merged_into, "
                "dissolved = EXCLUDED.dissolved, successor = EXCLUDED.successor",
                [(d.code, d.name, d.jurisdiction, d.merged_into, d.dissolved, d.successor)
                 for d in proposed.departments.values()])
            cur.executemany("INSERT INTO categories (code, name, retired) VALUES (%s, %s, %s) ON CONFLICT (code) "
                            "DO UPDATE SET name = EXCLUDED.name, retired = EXCLUDED.retired",
                            [(c.code, c.name, c.retired) for c in proposed.categories.values()])
        return Loaded(number, changes)


def seed(conn: psycopg.Connection[Any], now: datetime | None = None) -> Loaded:
    """The shipped organisation, when the database has none yet; one it has is kept as it is."""
    if conn.execute("SELECT 1 FROM jurisdictions LIMIT 1").fetchone():
        return Loaded(None, [])
    text = seed_document()
    return load(conn, read_document(text, SEED), text, f"suqiu/org/{SEED}", "seed", now or datetime.now(CHINA))


AS_OF_SQL = ("SELECT c.kind, c.code, c.detail FROM org_changes c JOIN org_versions v USING (version) "
             "WHERE v.loaded_at <= %s OR v.version = (SELECT min(version) FROM org_versions) "
             "ORDER BY c.version, c.seq")


def _replay(rows: list[tuple[Any, ...]]) -> Organisation:
    out = Organisation()
    for kind, code, detail in rows:
        out = org.apply(out, Change(kind, code, detail))
    return out


def as_of(conn: psycopg.Connection[Any], at: datetime) -> Organisation:
    """The organisation as it stood at `at`: the versions loaded by then, replayed (before the
    first version, the first)."""
    return _replay(conn.execute(AS_OF_SQL, (at,)).fetchall())


async def as_of_async(conn: psycopg.AsyncConnection[Any], at: datetime) -> Organisation:
    cur = await conn.execute(AS_OF_SQL, (at,))
    return _replay(await cur.fetchall())
