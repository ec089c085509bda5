"""The `suqiu` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import structlog

from suqiu.base import logs
from suqiu.base.config import EMBEDDED_ENDPOINTS, Settings
from suqiu.domain.model import Role
from suqiu.domain.sla import CHINA

PARALLEL_FROM = 5_000  # import rows below which starting worker processes costs more than it saves
AVERAGE_ROW_BYTES = 200  # a guess from the file size, so the workers can start while the file is read
log = structlog.get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suqiu", description="Suqiu (诉求): enterprise appeals backend")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="the embedded stack on loopback (broker, PostgreSQL, worker, API)")
    up.add_argument("--demo", action="store_true", help="also play a symposium's appeals through the lifecycle")
    up.add_argument("--state-dir", default=".suqiu", help="embedded data, endpoints.json and keys.json")
    sub.add_parser("worker", help="a Faust worker: command intake, outbox relay, agents")
    sub.add_parser("api", help="the HTTP API alone")
    sub.add_parser("relay", help="the outbox relay alone (every worker also runs one; one is active at a time)")
    mig = sub.add_parser("migrate", help="create/upgrade the database schema; safe to run twice")
    mig.add_argument("--seed", action="store_true", help="also load the Tianjin-like reference data")
    imp = sub.add_parser("import", help="load historical appeals from CSV with a column mapping (TOML)")
    imp.add_argument("file", help="the CSV file (its encoding is declared in the mapping)")
    imp.add_argument("--mapping", required=True, help="TOML: source_system, encoding, [columns], [values], [defaults]")
    imp.add_argument("--rejects", help="where bad rows go (default FILE.rejects.csv)")
    imp.add_argument("--workers", type=_processes, help="processes deciding and encoding rows (default: one "
                     f"per core for a file of about {PARALLEL_FROM:,} rows or more, judged by its size; else one)")
    keys = sub.add_parser("keys", help="API keys: create (the secret is shown once), list, revoke")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    kc = ks.add_parser("create")
    kc.add_argument("--role", required=True, choices=[r.value for r in Role])
    kc.add_argument("--department", help="required for, and only for, --role department")
    kc.add_argument("--uscc", action="append", default=[],
                    help="required for --role enterprise: an enterprise it speaks for (repeat for several)")
    kc.add_argument("--source-system", action="append", default=[], dest="source_systems",
                    help="--role intake only: a source system it submits for (repeat; none: any)")
    kc.add_argument("--label", help="who holds it, e.g. the integrating system's name")
    kc.add_argument("--system", help="the system id the key acts in (default SUQIU_SYSTEM_ID)")
    ks.add_parser("list")
    kr = ks.add_parser("revoke")
    kr.add_argument("prefix", help="the key's first 12 characters, as `suqiu keys list` shows them")
    pol = sub.add_parser("policy", help="the SLA policy: check a file before the workers and API load it")
    ps = pol.add_subparsers(dest="policy_command", required=True)
    pc = ps.add_parser("check", help="validate it, list its goals and say how far ahead its calendar knows "
                                     "working days (exit 1 when that is under 60 days away)")
    pc.add_argument("file", nargs="?", help="the policy TOML (default SUQIU_SLA_POLICY, else the shipped one)")
    org = sub.add_parser("org", help="the organisation (机构): jurisdictions, departments, categories")
    osub = org.add_subparsers(dest="org_command", required=True)
    ol = osub.add_parser("load", help="load a file as the next version and print what changed; a retired "
                                      "department's open cases are transferred to its successor")
    ol.add_argument("file", help="the organisation TOML (docs/organisation.md)")
    ol.add_argument("--by", help="who loads it, recorded with the version (default: the login name)")
    oc = osub.add_parser("check", help="validate a file, and with a database say what loading it would change")
    oc.add_argument("file")
    oshow = osub.add_parser("show", help="print the organisation in the file format")
    oshow.add_argument("--as-of", help="an ISO date or instant: the organisation as it stood then")
    rep = sub.add_parser("report", help="the monthly report (月度通报) of a jurisdiction, as an xlsx workbook")
    rep.add_argument("--month", required=True, help="YYYY-MM")
    rep.add_argument("--jurisdiction", required=True, help="a jurisdiction code; its whole subtree is reported")
    rep.add_argument("--out", help="the file to write (default suqiu-CODE-YYYY-MM.xlsx)")
    from suqiu.replay.cli import add_parser, instant_arg

    aud = sub.add_parser("audit", help="the read audit trail (安全审计): who read what, when, from where")
    asub = aud.add_subparsers(dest="audit_command", required=True)
    reads = asub.add_parser("reads", help="reads and refused authentications, newest first")
    reads.add_argument("--case", help="reads of this case")
    reads.add_argument("--key", help="reads with this key (its 12-character prefix, as `suqiu keys list` shows)")
    reads.add_argument("--from", dest="start", type=instant_arg, help="from this instant, e.g. 2026-12-01T00:00+08:00")
    reads.add_argument("--to", dest="end", type=instant_arg, help="before this instant")
    reads.add_argument("--limit", type=int, default=200)
    add_parser(sub)
    from suqiu.cli.classify import add_parser as add_classify
    from suqiu.cli.pii import add_parser as add_pii

    add_pii(sub)
    add_classify(sub)
    return parser



def _processes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of processes from 1 to 64")
    return n


def subcommands() -> set[str]:
    parser = build_parser()
    return {name for a in parser._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    settings = Settings.from_env()
    if args.command == "up":
        from suqiu.stack.up import run_up

        return run_up(settings, state_dir=args.state_dir, demo=args.demo)
    embedded = settings.beside_embedded()
    if embedded is not settings:
        log.info("using the embedded stack of this directory", endpoints=str(EMBEDDED_ENDPOINTS.resolve()))
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        return _run(args, embedded)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        if type(exc) not in (psycopg.OperationalError, PoolTimeout):
            raise  # a failure of a statement, not of reaching the server
        hint = f" (from {EMBEDDED_ENDPOINTS}: is that `suqiu up` still running?)" if embedded is not settings else ""
        sys.stderr.write(f"cannot reach PostgreSQL{hint}: {str(exc).strip()}\n")
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """The subcommand other than `up`, on settings that name the stack to use."""
    if args.command == "worker":
        return run_worker(settings.require())
    if args.command == "api":
        from suqiu.http.server import serve

        return asyncio.run(serve(settings.require()))
    if args.command == "relay":
        from suqiu.base.kafka_security import check_broker
        from suqiu.streams.relay import run_relay

        settings = settings.require()
        assert settings.kafka_bootstrap
        asyncio.run(check_broker(settings.kafka_bootstrap, settings.kafka_security))
        asyncio.run(run_relay(settings))
        return 0
    if args.command == "migrate":
        return run_migrate(settings, seed=args.seed)
    if args.command == "import":
        return asyncio.run(run_import(settings, args))
    if args.command == "keys":
        return run_keys(settings, args)
    if args.command == "org":
        from suqiu.cli.org import run_org

        return run_org(settings, args)
    if args.command == "report":
        return asyncio.run(run_report(settings, args))
    if args.command == "policy":
        return run_policy_check(args.file or settings.sla_policy, database_url=settings.database_url)
    if args.command == "replay":
        from suqiu.replay.cli import run

        return run(args, settings)
    if args.command == "audit":
        return asyncio.run(run_audit_reads(settings, args))
    if args.command == "pii":
        from suqiu.cli.pii import run_pii

        return run_pii(settings, args)
    if args.command == "classify":
        from suqiu.cli.classify import run_classify

        return run_classify(settings, args)
    return 2


async def run_audit_reads(settings: Settings, args: argparse.Namespace) -> int:
    """`suqiu audit reads`: the access log, newest first, one line an entry."""
    import psycopg

    from suqiu.store.access_log import search

    if not settings.database_url:
        sys.stderr.write("set SUQIU_DATABASE_URL\n")
        return 2
    if not 1 <= args.limit <= 100_000:
        sys.stderr.write("--limit: from 1 to 100000\n")
        return 2
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        entries = await search(conn, case_id=args.case, key_prefix=args.key, start=args.start, end=args.end,
                               limit=args.limit)
    sys.stdout.write(f"{'time (Asia/Shanghai)':<19}  {'key':<12}  {'role':<10} {'status':>6}  {'from':<15} what\n")
    for e in entries:
        sys.stdout.write(f"{e['at'].astimezone(CHINA):%Y-%m-%d %H:%M:%S}  {e['key_prefix'] or '-':<12}  "
                         f"{e['role'] or '-':<10} {e['status']:>6}  {e['remote'] or '-':<15} {e['method']} {e['path']}\n")
    return 0


def run_worker(settings: Settings) -> int:
    import faust

    from suqiu.base.kafka_security import check_broker
    from suqiu.base.logs import faust_logging
    from suqiu.base.processes import settle_gc
    from suqiu.streams.app import create_app

    assert settings.kafka_bootstrap
    asyncio.run(check_broker(settings.kafka_bootstrap, settings.kafka_security))
    worker = faust.Worker(create_app(settings), loglevel="WARNING", quiet=True, logging_config=faust_logging())
    # Faust's start-up spinner writes cursor controls into the log, and its handler turns the
    # root logger to DEBUG so that it can spin on every record.
    worker.spinner = None
    settle_gc()
    worker.execute_from_commandline()
    return 0


def run_policy_check(path: str | None, today: date | None = None, database_url: str | None = None) -> int:
    """0: valid, and the calendar knows the next 60 days; 1: it runs out sooner; 2: not valid,
    or (with a database) naming a category the loaded organisation lacks or has retired."""
    from collections import Counter

    from suqiu.base.calendar import ChinaWorkdays, coverage, coverage_text
    from suqiu.base.policy import PolicyError, load_policy, unknown_categories

    try:
        policy = load_policy(path)
    except PolicyError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    if database_url:
        import psycopg

        from suqiu.store import reference

        with psycopg.connect(database_url, autocommit=True) as conn:
            categories = reference.current(conn).categories
        unknown = unknown_categories(policy, categories)
        if unknown:
            sys.stderr.write(f"policy {path or 'shipped default'}: goals for categories the organisation does not "
                             f"have (or has retired): {', '.join(unknown)}; it has "
                             f"{', '.join(sorted(c for c in categories if not categories[c].retired))}\n")
            return 2
    out = [f"policy {path or 'shipped default'}: version {policy.version!r}, warning at "
           f"{policy.warning_share:.0%}, supervision {policy.supervision_after_minutes} min after a breach"]
    day = policy.calendar.day_seconds // 60

    def span(minutes: int, wall_clock: bool) -> str:
        if not wall_clock and minutes % day == 0:
            return f"{minutes // day} working day{'s' if minutes != day else ''}"
        return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min"

    for (category, priority), goal in [(("*", "*"), policy.default), *policy.goals.items()]:
        out.append(f"  {category:<14} {priority:<8} accept {span(goal.accept_minutes, goal.wall_clock)}, resolve "
                   f"{span(goal.resolve_minutes, goal.wall_clock)}, follow-up "
                   f"{span(goal.follow_up_minutes, goal.wall_clock)}"
                   + (" (wall clock)" if goal.wall_clock else ""))
    workdays = policy.calendar.is_workday
    if isinstance(workdays, ChinaWorkdays):
        # For the operator to hold against the State Council notice: a year listed only in part
        # counts every unlisted weekday as a working day.
        for year in sorted({d.year for d in workdays.overrides}):
            days = Counter(v for d, v in workdays.overrides.items() if d.year == year)
            out.append(f"  override {year}: {days[False]} holidays, {days[True]} make-up working days")
    cover = coverage(workdays, today or datetime.now(CHINA).date())
    out.append(f"calendar: {coverage_text(cover)}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0 if cover["status"] == "ok" else 1


def run_migrate(settings: Settings, *, seed: bool) -> int:
    import psycopg

    from suqiu.store import reference
    from suqiu.store.migrate import migrate

    if not settings.database_url:
        sys.stderr.write("set SUQIU_DATABASE_URL\n")
        return 2
    applied = migrate(settings.database_url)
    if seed:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            reference.seed(conn)
    created: list[str] = []
    if settings.kafka_bootstrap:
        from suqiu.streams.topics import ensure_topics

        created = asyncio.run(ensure_topics(settings))
    sys.stdout.write(f"migrations applied: {', '.join(applied) or 'none (up to date)'}\n")
    sys.stdout.write(f"topics created: {', '.join(created) or 'none'}\n")
    return 0


async def run_import(settings: Settings, args: argparse.Namespace) -> int:
    import functools
    import os
    import time
    from pathlib import Path

    from rich.progress import Progress

    from suqiu.cli.importer import (
        MappingError,
        ParallelCreator,
        create_rows,
        import_rows,
        load_mapping,
        read_rows,
        write_rejects,
    )
    from suqiu.service.runtime import Runtime

    path = Path(args.file)
    rejects = Path(args.rejects or f"{path}.rejects.csv")
    # Checked before anything is stored: rejected rows that cannot be written would be lost.
    if not rejects.parent.is_dir() or not os.access(rejects.parent, os.W_OK):
        sys.stderr.write(f"--rejects: cannot write {rejects}: its directory does not exist or is not writable\n")
        return 2
    started = time.perf_counter()
    try:
        mapping = load_mapping(Path(args.mapping))
    except MappingError as exc:
        sys.stderr.write(f"--mapping: {exc}\n")
        return 2
    if not settings.database_url:  # after the mapping, so that one can be checked with no database
        sys.stderr.write("set SUQIU_DATABASE_URL\n")
        return 2
    creator: ParallelCreator | None = None
    try:
        cores = os.cpu_count() or 1
        workers = args.workers or (cores if path.stat().st_size >= PARALLEL_FROM * AVERAGE_ROW_BYTES else 1)
        creator = ParallelCreator(settings, workers) if workers > 1 else None
        outcome, rows, lines = read_rows(path, mapping, settings.system_id)
    except (MappingError, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        if creator is not None:
            creator.close()
        return 2
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"importing {path.name}", total=len(lines))
        if creator is not None:
            try:
                await import_rows(creator, outcome, rows, lines, concurrency=2 * workers,
                                  progress=lambda n: bar.advance(task, n))
            finally:
                creator.close()
        else:
            from suqiu.base.processes import settle_gc

            runtime = await Runtime(settings).open()
            settle_gc()
            try:
                await import_rows(functools.partial(create_rows, runtime.service.run), outcome, rows, lines,
                                  progress=lambda n: bar.advance(task, n))
            finally:
                await runtime.close()
    seconds = time.perf_counter() - started
    if outcome.rejected:
        write_rejects(rejects, outcome)
    else:
        rejects.unlink(missing_ok=True)  # a previous run's rejects would mislead
    sys.stdout.write(f"{outcome.rows} rows in {seconds:.1f} s ({outcome.rows / max(seconds, 1e-9):,.0f} rows/s, "
                     f"{workers} worker{'s' if workers > 1 else ''}): "
                     f"{outcome.imported} imported, {outcome.already} already imported, "
                     f"{len(outcome.rejected)} rejected" + (f" (see {rejects})" if outcome.rejected else "") + "\n"
                     f"{outcome.open_cases(mapping)}\n")
    return 1 if outcome.rejected else 0


def run_keys(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg

    from suqiu.store.keys import create_key, list_keys, revoke_key

    if not settings.database_url:
        sys.stderr.write("set SUQIU_DATABASE_URL\n")
        return 2
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        if args.keys_command == "create":
            department = args.department
            if department is not None and conn.execute("SELECT 1 FROM departments WHERE code = %s",
                                                       (department,)).fetchone() is None:
                sys.stderr.write(f"--department: unknown department {department!r}\n")
                return 2
            try:
                secret = create_key(conn, args.system or settings.system_id, Role(args.role), department, args.label,
                                    usccs=tuple(args.uscc), source_systems=tuple(args.source_systems))
            except ValueError as exc:
                sys.stderr.write(f"{exc}\n")
                return 2
            sys.stdout.write(f"{secret}\n")
            sys.stderr.write("store it now: only its SHA-256 is kept, it cannot be shown again\n")
        elif args.keys_command == "list":
            sys.stdout.write(f"{'prefix':<12}  {'system':<10} {'role':<10} {'department':<16} {'state':<24} "
                             f"{'bound to':<24} label\n")
            for k in list_keys(conn):
                state = f"revoked {k['revoked_at']:%Y-%m-%d %H:%M}" if k["revoked_at"] else "active"
                bound = ",".join(k["bound_to"]) or "-"
                sys.stdout.write(f"{k['prefix']}  {k['system']:<10} {k['role']:<10} {k['department'] or '-':<16} "
                                 f"{state:<24} {bound:<24} {k['label'] or ''}\n")
        else:
            n = revoke_key(conn, args.prefix)
            if n == 0:
                sys.stderr.write(f"no active key with prefix {args.prefix!r}\n")
                return 1
            sys.stdout.write(f"revoked {n} key(s); API processes stop accepting it within seconds\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())


async def run_report(settings: Settings, args: argparse.Namespace) -> int:
    """0: written; 2: an unknown jurisdiction, a malformed month or a file that cannot be
    written (nothing written)."""
    import psycopg

    from suqiu.domain import DomainError
    from suqiu.domain.periods import Period
    from suqiu.domain.refdata import departments_in, subtree
    from suqiu.projections import report
    from suqiu.store import reference

    if not settings.database_url:
        sys.stderr.write("set SUQIU_DATABASE_URL (the report reads the read models)\n")
        return 2
    try:
        month = Period.month(args.month)
    except DomainError as exc:
        sys.stderr.write(f"{exc.message}\n")
        return 2
    assert month.start is not None
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        now_org = await reference.read_async(conn)
        departments, jurisdictions = now_org.organisation.departments, now_org.organisation.jurisdictions
        if args.jurisdiction not in jurisdictions:
            sys.stderr.write(f"no jurisdiction {args.jurisdiction!r}; known: {', '.join(sorted(jurisdictions))}\n")
            return 2
        body = await report.monthly(conn, now_org.organisation, now_org.merged_on, args.jurisdiction, month,
                                    datetime.now(UTC))
        held = departments_in(departments, subtree(jurisdictions, args.jurisdiction))
    out = Path(args.out or report.filename(args.jurisdiction, month.start))
    try:
        out.write_bytes(body)
    except OSError as exc:
        sys.stderr.write(f"cannot write {out}: {exc.strerror or exc}\n")
        return 2
    sys.stdout.write(f"{out}: {args.jurisdiction}, {len(held)} departments, {month.start:%Y-%m} beside the month before\n")
    return 0
