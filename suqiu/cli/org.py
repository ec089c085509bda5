"""`suqiu org`: check a file, load it as the next version (and transfer the open cases of the
departments it retires), and show the organisation now or as it stood on a date."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import structlog
import tomli_w

from suqiu.base import tomlfile
from suqiu.base.config import Settings
from suqiu.base.policy import PolicyError, load_policy, unknown_categories
from suqiu.domain import DomainError, inputs
from suqiu.domain.model import Actor, Role
from suqiu.domain.org import Organisation, OrgError, to_document
from suqiu.store import reference

TRANSFERABLE = ("dispatched", "accepted")  # the states a 转办 is allowed in (suqiu.domain.access)
log = structlog.get_logger(__name__)
_IDS = uuid.UUID("6f1d3c2a-5b8e-4c1f-9a7d-2e4b6c8d0f13")  # command ids of reorganisation transfers


def run_org(settings: Settings, args: argparse.Namespace) -> int:
    """0: done; 2: the file or the request was refused (nothing loaded)."""
    if args.org_command == "show":
        return _show(settings, args.as_of)
    path = Path(args.file)
    try:
        text = tomlfile.read_text(path)
        proposed = reference.read_document(text, str(path))
        _check_policy(settings, proposed)
    except tomlfile.TomlError as exc:
        return _refused([f"{path}: {exc}"])
    except (OrgError, PolicyError) as exc:
        return _refused(exc.problems if isinstance(exc, OrgError) else [str(exc)])
    if not settings.database_url:
        if args.org_command == "check":
            sys.stdout.write(f"{path}: valid ({_sizes(proposed)}); set SUQIU_DATABASE_URL to see what it changes\n")
            return 0
        return _refused(["set SUQIU_DATABASE_URL (the organisation is loaded into the database)"])
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        try:
            loaded = reference.load(conn, proposed, text, str(path), args.by if args.org_command == "load" and args.by
                                    else getpass.getuser(), datetime.now(UTC), dry_run=args.org_command == "check")
        except OrgError as exc:
            return _refused(exc.problems)
    lines = [c.describe() for c in loaded.changes] or ["no changes"]
    head = (f"{path}: valid ({_sizes(proposed)}); loading it would change:" if args.org_command == "check"
            else f"{path}: loaded as version {loaded.version}:" if loaded.version else f"{path}: nothing to load:")
    sys.stdout.write("\n".join([head, *(f"  {line}" for line in lines)]) + "\n")
    if args.org_command == "load" and not all(d.active for d in proposed.departments.values()):
        for line in asyncio.run(_transfer(settings)):
            sys.stdout.write(f"  {line}\n")
    return 0


def _check_policy(settings: Settings, proposed: Organisation) -> None:
    unknown = unknown_categories(load_policy(settings.sla_policy), proposed.categories)
    if unknown:
        raise OrgError([f"category {c}: the SLA policy ({settings.sla_policy or 'shipped'}) has goals for it; "
                        "keep it (not retired) or change the policy first" for c in unknown])


async def _transfer(settings: Settings) -> list[str]:
    """Send every open case of a retired department to its successor, by ordinary 转办 commands
    from the system actor (clocks as on any transfer). Run on every load, so a load cut short
    is finished by the next one; a case's command id is fixed, so none is transferred twice."""
    from suqiu.service.commands import CommandRequest
    from suqiu.service.runtime import Runtime

    out: list[str] = []
    rt = await Runtime(settings).open()
    try:
        ctx = rt.context
        retired = {d.code: (d.merged_into or d.successor) for d in ctx.departments.values() if not d.active}
        async with rt.pool.connection() as conn:
            cur = await conn.execute("SELECT case_id, seq, department, status FROM case_view WHERE department = ANY(%s) "
                                     "AND status NOT IN ('closed', 'withdrawn') ORDER BY case_id", (list(retired),))
            held = await cur.fetchall()
        moved: dict[tuple[str, str], int] = {}
        waiting: dict[str, int] = {}
        for case_id, seq, department, status in held:
            target = retired[department]
            if target is None or status not in TRANSFERABLE:
                waiting[department] = waiting.get(department, 0) + 1
                continue
            was = ctx.departments[department]
            reason = f"机构调整：{was.name}已{'合并' if was.merged_into else '撤销'}，转{ctx.departments[target].name}办理"
            try:
                await rt.service.execute(CommandRequest(
                    "transfer", str(uuid.uuid5(_IDS, f"{case_id}:{seq}:{target}")),
                    Actor(settings.system_id, Role.SYSTEM, person="reorganisation"),
                    {"department": target, "reason": reason}, case_id=case_id))
            except DomainError as exc:
                log.warning("reorganisation transfer refused", case_id=case_id, error=exc.message)
                waiting[department] = waiting.get(department, 0) + 1
                continue
            moved[(department, target)] = moved.get((department, target), 0) + 1
        out += [f"transferred {n} open case{'s' if n != 1 else ''} from {a} to {b}" for (a, b), n in sorted(moved.items())]
        out += [f"{n} open case{'s' if n != 1 else ''} at {d} could not be transferred now (not dispatched or accepted); "
                "the next `suqiu org load` tries again, or a dispatcher transfers them" for d, n in sorted(waiting.items())]
    finally:
        await rt.close()
    return out


def _show(settings: Settings, as_of: str | None) -> int:
    if not settings.database_url:
        return _refused(["set SUQIU_DATABASE_URL"])
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        if as_of is None:
            found = reference.current(conn)
        else:
            try:
                at = inputs.as_of(as_of, "as_of")
            except DomainError as exc:
                return _refused([exc.message])
            found = reference.as_of(conn, at)
    sys.stdout.write(tomli_w.dumps(to_document(found)))
    return 0


def _sizes(org: Organisation) -> str:
    return (f"{len(org.jurisdictions)} jurisdictions, {len(org.departments)} departments, "
            f"{len(org.categories)} categories")


def _refused(problems: list[str]) -> int:
    sys.stderr.write("refused, nothing loaded:\n" + "".join(f"  - {p}\n" for p in problems))
    return 2
