"""`suqiu up`: the embedded stack as child processes, stopped cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import _thread
import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import structlog

from suqiu.base import logs
from suqiu.base.calendar import coverage, coverage_text
from suqiu.base.config import DEFAULT_HTTP_PORT, EMBEDDED_ENDPOINTS, Settings
from suqiu.base.policy import load_policy
from suqiu.base.processes import die_with_parent
from suqiu.base.sealing import MasterKey
from suqiu.domain.model import Role
from suqiu.domain.sla import CHINA
from suqiu.stack.embedded import EmbeddedBroker, EmbeddedPostgres, _stop, free_port
from suqiu.stack.supervisor import Component, Supervisor, Tail
from suqiu.store import reference
from suqiu.store.keys import create_key
from suqiu.store.migrate import migrate
from suqiu.streams.topics import ensure_topics

log = structlog.get_logger(__name__)
UP_LABEL = "suqiu-up"
ROLE_DEPARTMENTS = {Role.DEPARTMENT: "bh-market"}


def issue_keys(dsn: str, system_id: str) -> dict[str, dict[str, Any]]:
    """One fresh key per role; the keys of the previous `suqiu up` are revoked.

    The enterprise key speaks for the demo's enterprises (an enterprise key is always bound).
    """
    from suqiu.stack.demo import ENTERPRISES

    usccs = tuple(uscc for uscc, _ in ENTERPRISES)
    keys: dict[str, dict[str, Any]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE label = %s AND revoked_at IS NULL", (UP_LABEL,))
        for role in (Role.INTAKE, Role.DISPATCHER, Role.DEPARTMENT, Role.ENTERPRISE, Role.AUDITOR, Role.ADMIN):
            department = ROLE_DEPARTMENTS.get(role)
            bound = usccs if role is Role.ENTERPRISE else ()
            keys[role.value] = {"key": create_key(conn, system_id, role, department, UP_LABEL, usccs=bound),
                                "department": department, "usccs": list(bound)}
    return keys


class Stack:
    """Starts what is not configured, then the worker and the API, and keeps them all running."""

    def __init__(self, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.broker: EmbeddedBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.supervisor: Supervisor | None = None
        self.watcher: threading.Thread | None = None

    def watch(self) -> None:
        """Supervise from a thread; a crash loop interrupts the main thread (see run_up)."""
        assert self.supervisor is not None
        sup = self.supervisor

        def run() -> None:
            sup.watch()
            if sup.gave_up is not None:
                _thread.interrupt_main()

        self.watcher = threading.Thread(target=run, name="supervisor", daemon=True)
        self.watcher.start()

    def start(self) -> Settings:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        s = self.settings
        if not _port_free(s.http_host, s.http_port):
            # The API binds with SO_REUSEPORT so that API processes can share a port: bound next to
            # another stack's, it would answer half of that stack's requests from this store.
            if s.http_port != DEFAULT_HTTP_PORT:
                raise SystemExit(f"SUQIU_HTTP_PORT {s.http_port}: something already listens on "
                                 f"{s.http_host}:{s.http_port} (another suqiu up?); choose a free port")
            s = s.with_(http_port=free_port())
        if not s.master_key_file:
            # Kept with the database it protects: a copy of the state directory needs both.
            key = self.state_dir / "master.key"
            if not key.exists():
                MasterKey.write_new(key)
            s = s.with_(master_key_file=str(key.resolve()))
        sup = self.supervisor = Supervisor()
        if not s.database_url:
            pg = self.postgres = EmbeddedPostgres(self.state_dir / "postgres")
            s = s.with_(database_url=pg.dsn)
            sup.add(Component("postgres", lambda: _started(pg.start, pg), stop=lambda _: pg.stop(), why=pg.last_error))
        if not s.kafka_bootstrap:
            broker = self.broker = EmbeddedBroker()
            s = s.with_(kafka_bootstrap=broker.bootstrap)
            # The broker keeps nothing: a new one gets the topics, and the relay finds its epoch
            # marker gone and republishes the store. The worker's consumers held the old one's state.
            topics = functools.partial(_topics, s)
            sup.add(Component("broker", lambda: _started(broker.start, broker, topics), needed_by=("worker",)))
        self.settings = s
        assert s.database_url
        migrate(s.database_url)
        with psycopg.connect(s.database_url, autocommit=True) as conn:
            reference.seed(conn)
        _topics(s)
        for role in ("worker", "api"):
            tail = Tail()
            sup.add(Component(role, functools.partial(self._launch, role, tail), why=tail.last))
        return s

    def _launch(self, role: str, tail: Tail) -> subprocess.Popen[bytes]:
        """`suqiu worker` or `suqiu api`, its output passed on and its last line kept (the API: once it answers)."""
        env = {**os.environ, **self.settings.to_env(), **logs.child_env()}
        proc = subprocess.Popen([sys.executable, "-m", "suqiu", role], env=env,
                                stderr=subprocess.PIPE, preexec_fn=die_with_parent, start_new_session=True)
        assert proc.stderr is not None
        threading.Thread(target=tail.follow, args=(proc.stderr, _to_stderr), daemon=True,
                         name=f"{role}-output").start()
        if role == "api":
            try:
                wait_for_http(self.http_url, [proc])
            except RuntimeError:
                _stop(proc, signal.SIGTERM)
                raise
        return proc

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def write_files(self, keys: dict[str, dict[str, Any]]) -> None:
        endpoints = {"http": self.http_url, "kafka_bootstrap": self.settings.kafka_bootstrap,
                     "database_url": self.settings.database_url, "master_key_file": self.settings.master_key_file}
        if self.postgres is not None:
            endpoints["database_tcp_url"] = self.postgres.tcp_dsn  # the same server, for tools that want TCP
        (self.state_dir / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
        keys_file = self.state_dir / "keys.json"
        keys_file.write_text(json.dumps(keys, indent=2) + "\n")
        keys_file.chmod(0o600)

    def stop(self) -> None:
        """Stop watching (a restart under way finishes first), then stop everything, the API first."""
        if self.supervisor is None:
            return
        self.supervisor.stop()
        if self.watcher is not None:
            self.watcher.join(90)
        self.supervisor.stop_all()


def _started(start: Callable[[], object], embedded: EmbeddedBroker | EmbeddedPostgres,
             then: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    start()
    if then is not None:
        then()
    assert embedded.proc is not None
    return embedded.proc


def _topics(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings))


def _to_stderr(line: bytes) -> None:
    sys.stderr.buffer.write(line)
    sys.stderr.buffer.flush()


def wait_for_http(url: str, children: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    """Until the API at `url` answers; fails early when one of `children` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.poll() is not None:
                raise RuntimeError(f"{_component(child)} exited with code {child.returncode} while starting")
        try:
            urllib.request.urlopen(f"{url}/v1/schemas", timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the HTTP API at {url} did not come up")


def _gave_up(stack: Stack) -> int:
    """0 when stopped on request; 1, with the reason, when a component was given up."""
    gave_up = stack.supervisor.gave_up if stack.supervisor else None
    if gave_up is None:
        return 0
    log.error("stopping: a component keeps failing", reason=str(gave_up))
    return 1


def _calendar_line(settings: Settings) -> str:
    """How far ahead deadlines can be placed, and what is missing when that is soon."""
    policy = load_policy(settings.sla_policy)
    return coverage_text(coverage(policy.calendar.is_workday, datetime.now(CHINA).date()))


def _component(child: subprocess.Popen[bytes]) -> str:
    """What a `suqiu ...` child runs (its last argument: api, worker)."""
    args = child.args
    return str(args[-1]) if isinstance(args, list | tuple) else str(args)


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def run_up(settings: Settings, *, state_dir: str, demo: bool) -> int:
    stack: Stack | None = None

    def request_stop(signum: int, frame: object) -> None:
        if stack is not None and stack.supervisor is not None:
            stack.supervisor.stop()  # before anything else: what is being stopped is not restarted
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if demo and settings.sla_policy is None:
        # Goals of minutes on wall-clock time: warnings, breaches and 督办 happen while you watch.
        settings = settings.with_(sla_policy=str(resources.files("suqiu").joinpath("policies/demo.toml")))
    stack = Stack(settings, Path(state_dir))
    try:
        s = stack.start()
        assert s.database_url
        keys = issue_keys(s.database_url, s.system_id)
        stack.write_files(keys)
        lines = [
            "Suqiu is up.",
            f"  HTTP API         {stack.http_url}/v1",
            f"  board (督办看板)  {stack.http_url}/board/  (sign in with an API key from keys.json)",
            f"  Kafka bootstrap  {s.kafka_bootstrap}   (topics prefix {s.topic_prefix!r})",
            f"  PostgreSQL       {s.database_url}",
            *([f"                   {stack.postgres.tcp_dsn}   (the same server over TCP)"]
              if stack.postgres is not None and stack.postgres.tcp_dsn != s.database_url else []),
            f"  SLA policy       {s.sla_policy or 'shipped default'}",
            f"  Calendar         {_calendar_line(s)}",
            f"  State directory  {Path(state_dir).resolve()} (endpoints.json, keys.json)",
            "                   " + ("other suqiu commands run in this directory use this stack"
                                     if Path(state_dir).resolve() == EMBEDDED_ENDPOINTS.parent.resolve() else
                                     "other suqiu commands: set SUQIU_DATABASE_URL and SUQIU_KAFKA_BOOTSTRAP "
                                     "as endpoints.json says"),
            f"  API keys         {(Path(state_dir) / 'keys.json').resolve()} (mode 0600), one per role "
            "(Authorization: Bearer <key>):",
            # The secrets stay in the file: a terminal's scrollback and a service's log outlive them.
            # The demo is the exception: it is played on a throwaway stack, to be tried at once.
            *(f"    {role:<11} {k['key'] if demo else '(in keys.json)'}"
              + (f"  (department {k['department']})" if k["department"] else "") for role, k in keys.items()),
            "Ctrl-C stops everything.",
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        stack.watch()
        if demo:
            from suqiu.stack.demo import play

            asyncio.run(play(stack.http_url, keys, s.database_url))
        assert stack.watcher is not None
        stack.watcher.join()
        return _gave_up(stack)
    except KeyboardInterrupt:
        return _gave_up(stack)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        sys.stdout.write("Suqiu stopped.\n")
