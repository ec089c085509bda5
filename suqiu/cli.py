"""The `suqiu` command line (interface.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from suqiu import logs
from suqiu.config import Settings


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
    from replay.cli import add_parser

    add_parser(sub)
    return parser


def subcommands() -> set[str]:
    parser = build_parser()
    return {name for a in parser._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    settings = Settings.from_env()
    if args.command == "up":
        from suqiu.stack import run_up

        return run_up(settings, state_dir=args.state_dir, demo=args.demo)
    if args.command == "worker":
        return run_worker(settings.require())
    if args.command == "api":
        from suqiu.server import serve

        return asyncio.run(serve(settings.require()))
    if args.command == "relay":
        from streams.relay import run_relay

        asyncio.run(run_relay(settings.require()))
        return 0
    if args.command == "migrate":
        return run_migrate(settings, seed=args.seed)
    if args.command == "replay":
        from replay.cli import run

        return run(args, settings)
    return 2


def run_worker(settings: Settings) -> int:
    import faust

    from streams.app import create_app

    worker = faust.Worker(create_app(settings), loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
    return 0


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
        from streams.topics import ensure_topics

        created = asyncio.run(ensure_topics(settings))
    sys.stdout.write(f"migrations applied: {', '.join(applied) or 'none (up to date)'}\n")
    sys.stdout.write(f"topics created: {', '.join(created) or 'none'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
