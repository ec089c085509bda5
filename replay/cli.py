"""`suqiu replay …`: the auditors' tool. Reads the store; the topic and packages for cross-checks."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from suqiu.base.config import Settings
from suqiu.base.kafka_security import check_broker
from suqiu.domain.refdata import Jurisdiction, subtree
from suqiu.domain.sla import CHINA
from suqiu.replay import export as packages
from suqiu.replay import history, verify
from suqiu.schemas.codec import Codec
from suqiu.store import access_log

PARALLEL_REBUILD_FROM = 100_000  # events below which starting worker processes costs more than it saves


def add_parser(sub: Any) -> None:
    replay = sub.add_parser("replay", help="the auditors' tool: history, as-of, verify, export, rebuild, restore")
    rs = replay.add_subparsers(dest="replay_command", required=True)
    case = rs.add_parser("case", help="a case's whole history in order, or the case as it stood then")
    case.add_argument("case_id")
    case.add_argument("--format", choices=("table", "json", "csv"), default="table")
    when = case.add_mutually_exclusive_group()
    when.add_argument("--as-of", type=instant_arg, help="e.g. 2026-07-23T15:00+08:00 (no zone means Asia/Shanghai)")
    when.add_argument("--seq", type=int, help="the case after event N")
    ver = rs.add_parser("verify", help="recompute hash chains; compare with the topic or an earlier export")
    ver.add_argument("case_id", nargs="?")
    ver.add_argument("--all", action="store_true", help="every case (the default without a case id)")
    ver.add_argument("--against-topic", action="store_true", help="compare the store with appeals.events.v1")
    ver.add_argument("--against-package", type=Path, metavar="DIR", help="compare with an export's chain heads")
    ver.add_argument("--package", type=Path, metavar="DIR", help="check an audit package offline (no database)")
    ver.add_argument("--access-log", action="store_true", help="also check the read audit trail's hash chains")
    rb = rs.add_parser("rebuild", help="drop and rebuild every read model from the store")
    rb.add_argument("--workers", type=int, help="processes folding the cases "
                    f"(default: one per core from {PARALLEL_REBUILD_FROM:,} events, else one)")
    rs.add_parser("restore", help="republish the store into an empty broker")
    exp = rs.add_parser("export", help="an audit package: events.jsonl, timeline.csv, manifest.json")
    exp.add_argument("--from", dest="start", type=instant_arg, required=True)
    exp.add_argument("--to", dest="end", type=instant_arg, required=True)
    exp.add_argument("--department")
    exp.add_argument("--jurisdiction", help="this jurisdiction and every node under it")
    exp.add_argument("--out", type=Path, required=True)


def instant_arg(text: str) -> datetime:
    """An ISO 8601 instant given on the command line; one without a zone is Beijing time."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 instant like 2026-07-23T15:00+08:00") from None
    return t if t.tzinfo else t.replace(tzinfo=CHINA)


def run(args: argparse.Namespace, settings: Settings, out: Console | None = None) -> int:
    """Exit codes: 0 clean, 1 problems found (tampering, missing, different), 2 usage or setup."""
    console = out or Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False)
    cmd = args.replay_command
    if cmd == "verify" and args.package is not None:
        if not args.package.is_dir():
            err.print(f"--package: no package directory at {args.package}")
            return 2
        try:
            manifest, problems = packages.verify_package(args.package)
        except packages.PackageError as exc:
            return _verdict(console, [verify.Problem("-", 0, "manifest", str(exc))], f"package {args.package}")
        return _verdict(console, problems, f"package {args.package}: {manifest['counts']['cases']} cases, "
                                            f"{manifest['counts']['events']} events")
    if not settings.database_url:
        err.print("set SUQIU_DATABASE_URL (see `suqiu up`'s endpoints.json)")
        return 2
    codec = Codec()
    if cmd == "case":
        return _case(console, settings, codec, args)
    if cmd == "verify":
        return _verify(console, settings, codec, args)
    if cmd == "export":
        return _export(console, settings, codec, args)
    if cmd == "rebuild":
        return asyncio.run(_rebuild(console, settings, args.workers))
    if cmd == "restore":
        if not settings.kafka_bootstrap:
            err.print("set SUQIU_KAFKA_BOOTSTRAP")
            return 2
        return _restore(console, settings)
    return 2


def _case(console: Console, settings: Settings, codec: Codec, args: argparse.Namespace) -> int:
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        found = history.find_case(conn, args.case_id)
        if len(found) > 1:
            Console(stderr=True).print(f"{args.case_id!r} names {len(found)}{'+' if len(found) == 5 else ''} cases: "
                                       f"{', '.join(found)}; give more of the id")
            return 2
        stored = history.load(conn, codec, found[0]) if found else []
    if not stored:
        Console(stderr=True).print(f"no case {args.case_id} (a case id, its first {history.MIN_PREFIX} or more "
                                   "characters, or a 工单编号)")
        return 2
    case_id = found[0]
    if args.as_of is not None or args.seq is not None:
        at = args.as_of or max(s.event.recorded_at for s in stored if s.event.seq <= args.seq)
        state = history.case_json(history.as_of(stored, at=args.as_of, seq=args.seq), at)
        console.print_json(json.dumps(state, ensure_ascii=False)) if args.format == "table" else \
            console.out(json.dumps(state, ensure_ascii=False))
        return 0
    entries = [history.entry(s) for s in stored]
    if args.format == "json":
        console.out(history.to_jsonl(entries), end="")
    elif args.format == "csv":
        console.out(history.to_csv(entries), end="")
    else:
        console.print(_table(case_id, entries, wide=console.width >= WIDE))
    return 0


WIDE = 140  # columns from which the history shows UTC times and whole actors beside the rest


def _table(case_id: str, entries: list[dict[str, Any]], *, wide: bool) -> Table:
    """The history as a table; on a narrow terminal the fixed columns keep their words whole and
    only the reason and deadlines fold, instead of every cell breaking into single words."""
    table = Table(title=f"case {case_id}", show_lines=not wide)
    columns = ("seq", "time (Asia/Shanghai)", "time (UTC)", "event", "actor", "reason", "deadlines", "SLA") if wide \
        else ("seq", "time (CST)", "event", "actor", "reason", "deadlines")
    for col in columns:
        folds = col in ("reason", "deadlines") or wide
        table.add_column(col, overflow="fold", no_wrap=not folds, ratio=3 if col == "reason" else None)
    for x in entries:
        a = x["actor"]
        deadlines = "\n".join(f"{k} {_cst(v)}" for k, v in x["deadlines"].items())
        if wide:
            actor = "/".join(v for v in (a["system"], a["role"], a["department"], a["person"]) if v)
            table.add_row(str(x["seq"]), x["time_cst"][:19], x["time_utc"], x["event"], actor, x["reason"], deadlines,
                          x["sla"])
        else:
            table.add_row(str(x["seq"]), _cst(x["time_utc"]), x["event"], a["department"] or a["role"],
                          x["reason"] + (f" [{x['sla']}]" if x["sla"] else ""), deadlines)
    return table


def _cst(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(CHINA).strftime("%m-%d %H:%M")


def _verify(console: Console, settings: Settings, codec: Codec, args: argparse.Namespace) -> int:
    assert settings.database_url
    problems: list[verify.Problem] = []
    with psycopg.connect(settings.database_url) as conn:
        with _progress(console, "verifying chains") as tick:
            report = verify.verify_store(conn, codec, args.case_id, progress=tick)
        problems += report.problems
        summary = f"{report.cases} case(s), {report.events} event(s) verified"
        if args.case_id and report.events == 0:
            problems.append(verify.Problem(args.case_id, 0, "missing", "no such case in the store"))
        if args.against_package is not None:
            try:
                manifest = packages.read_manifest(args.against_package)
            except packages.PackageError as exc:
                problems.append(verify.Problem("-", 0, "manifest", f"{args.against_package}: {exc}"))
            else:
                problems += verify.compare_heads(conn, manifest["cases"])
                summary += f"; {len(manifest['cases'])} chain head(s) of {args.against_package} compared"
        if args.access_log:
            with conn.cursor(name="access_log") as cur:
                cur.execute(access_log.VERIFY_SQL)
                checked, broken = access_log.verify(cur)
            summary += f"; access log: {checked} entr{'y' if checked == 1 else 'ies'}"
            problems += [verify.Problem(f"access-log {b.writer}", b.seq, "access log", b.problem) for b in broken]
        if args.against_topic:
            if not settings.kafka_bootstrap:
                Console(stderr=True).print("set SUQIU_KAFKA_BOOTSTRAP for --against-topic")
                return 2
            asyncio.run(check_broker(settings.kafka_bootstrap, settings.kafka_security))
            topic = verify.read_topic_digests(settings.kafka_bootstrap, settings.events_topic,
                                              security=settings.kafka_security)
            diff = verify.compare_with_topic(verify.store_rows(conn), topic)
            summary += f"; topic {settings.events_topic}: {diff.topic_records} record(s)"
            problems += [verify.Problem(c, s, "missing on topic", f"event {e}") for c, s, e in diff.missing_on_topic]
            problems += [verify.Problem(c, s, "different on topic", f"event {e}: bytes differ")
                         for c, s, e in diff.different]
            problems += [verify.Problem("-", 0, "missing in store", f"event {e} {why}")
                         for e, why in diff.missing_in_store]
    return _verdict(console, problems, summary)


def _verdict(console: Console, problems: list[verify.Problem], summary: str) -> int:
    for p in problems:
        console.out(f"BROKEN {p}")
    console.out(f"{summary}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _export(console: Console, settings: Settings, codec: Codec, args: argparse.Namespace) -> int:
    assert settings.database_url
    err = Console(stderr=True)
    if args.end <= args.start:
        err.print("--to: must be after --from (to is exclusive)")
        return 2
    if args.out.exists() and not args.out.is_dir():
        err.print(f"--out: {args.out} is a file; the package is a directory")
        return 2
    with psycopg.connect(settings.database_url) as conn:
        nodes = None
        # A code typed wrong would give an empty package that reads as "no such cases".
        if args.department and conn.execute("SELECT FROM departments WHERE code = %s",
                                            (args.department,)).fetchone() is None:
            err.print(f"--department: unknown department {args.department!r}")
            return 2
        if args.jurisdiction:
            tree = {r[0]: Jurisdiction(*r) for r in conn.execute("SELECT code, name, level, parent FROM jurisdictions")}
            if args.jurisdiction not in tree:
                err.print(f"--jurisdiction: unknown jurisdiction {args.jurisdiction!r}")
                return 2
            nodes = frozenset(subtree(tree, args.jurisdiction))
        w = packages.Window(args.start.astimezone(UTC), args.end.astimezone(UTC), args.department, nodes)
        try:
            with _progress(console, "exporting") as tick:
                manifest = packages.export(conn, codec, w, args.out, progress=tick)
        except OSError as exc:
            err.print(f"--out: cannot write {args.out}: {exc.strerror or exc}")
            return 2
    console.out(f"exported {manifest['counts']['events']} event(s) of {manifest['counts']['cases']} case(s) "
                f"to {args.out}")
    return 0


async def _rebuild(console: Console, settings: Settings, workers: int | None) -> int:
    from suqiu.base.clock import SystemClock
    from suqiu.replay.rebuild import RebuildError, rebuild

    assert settings.database_url
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM events")
        row = await cur.fetchone()
    total = row[0] if row else 0
    workers = workers or ((os.cpu_count() or 1) if total >= PARALLEL_REBUILD_FROM else 1)
    try:
        with _progress(console, "rebuilding read models", total=total) as tick:
            n = await rebuild(settings.database_url, settings.sla_policy, SystemClock().now, settings.events_topic,
                              settings.partitions, workers=workers, progress=tick)
    except RebuildError as exc:
        console.print(f"[red]rebuild failed, read models unchanged:[/red] {exc}")
        return 1
    console.out(f"rebuilt case views, timelines, SLA timers and department facts from {n} event(s)")
    return 0


def _restore(console: Console, settings: Settings) -> int:
    from suqiu.replay.restore import restore

    assert settings.database_url and settings.kafka_bootstrap
    asyncio.run(check_broker(settings.kafka_bootstrap, settings.kafka_security))
    with psycopg.connect(settings.database_url) as conn, _progress(console, "republishing") as tick:
        n = restore(conn, settings, progress=tick)
    console.out(f"republished {n} event(s) to {settings.events_topic}")
    return 0


@contextmanager
def _progress(console: Console, what: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; silent in pipes and tests."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)
