"""Keeps the processes `suqiu up` started running: restart with backoff, give up on a crash loop.

A small district runs the embedded stack as its production, so a component that dies is
started again on the same port and data directory, and whatever depends on it after it. Only
a component that keeps failing within a short window stops the stack, naming it and its last
words, because restarting it again would only hide the fault.
"""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)


@dataclass
class RestartBudget:
    """When to restart a component again, and when to stop trying.

    Each failure waits twice as long as the one before (from `first` up to `longest`); more than
    `limit` failures within `window` seconds is a crash loop. A component that ran longer than
    the window since its last failure starts again from the shortest wait.
    """

    first: float = 0.5
    longest: float = 8.0
    limit: int = 5
    window: float = 60.0
    failures: collections.deque[float] = field(default_factory=collections.deque)

    def failed(self, now: float) -> float | None:
        """The wait before the next start, or None: give up."""
        while self.failures and now - self.failures[0] > self.window:
            self.failures.popleft()
        self.failures.append(now)
        if len(self.failures) > self.limit:
            return None
        wait: float = min(self.first * 2.0 ** (len(self.failures) - 1), self.longest)
        return wait


class Tail:
    """A process's output, forwarded as it comes, and the last line of it that reads as a fault."""

    # Routine lines in either log format (suqiu.base.logs): JSON, or the console renderer's.
    _ROUTINE = ('"level": "info"', '"level": "debug"', '"level": "warning"', "[info ", "[debug ", "[warning ")

    def __init__(self) -> None:
        self.fault = ""

    def follow(self, stream: Iterable[bytes], sink: Callable[[bytes], object]) -> None:
        for line in stream:
            sink(line)
            text = line.decode("utf-8", "replace").strip()
            # A structured error, or plain text: the last line of a traceback, a crash message.
            if text and not any(r in text for r in self._ROUTINE):
                self.fault = text[:500]

    def last(self) -> str:
        return self.fault


@dataclass
class Component:
    """One supervised process: how to start it (returning once it is ready) and what needs it."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    stop: Callable[[subprocess.Popen[bytes]], object] = lambda proc: _terminate(proc)
    needed_by: tuple[str, ...] = ()  # restarted after this one: they hold state it lost
    why: Callable[[], str] = lambda: ""  # the cause of a death, from the component's own output
    proc: subprocess.Popen[bytes] | None = None
    budget: RestartBudget = field(default_factory=RestartBudget)
    restart_at: float | None = None  # monotonic time of the next start, once it has died
    restarts: int = 0


class GaveUp(Exception):
    """A component kept failing: the message names it and what it last said."""


class Supervisor:
    """Starts components in order and, from `watch`, restarts the ones that die."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.components: dict[str, Component] = {}
        self._clock = clock
        self._stopping = threading.Event()
        self.gave_up: GaveUp | None = None

    def add(self, c: Component) -> None:
        """Start `c` (a failure to start the first time is the caller's) and watch it from now on."""
        c.proc = c.start()
        self.components[c.name] = c

    def check(self) -> None:
        """One round: note what died, and start what is due. GaveUp on a crash loop."""
        now = self._clock()
        for c in self.components.values():
            if c.restart_at is None and c.proc is not None and c.proc.poll() is not None:
                self._died(c, f"exited with code {c.proc.returncode}", now)
        for c in self.components.values():
            if c.restart_at is not None and c.restart_at <= now and not self._stopping.is_set():
                self._restart(c)

    def _died(self, c: Component, how: str, now: float) -> None:
        why = c.why()
        wait = c.budget.failed(now)
        if wait is None:
            raise GaveUp(f"{c.name} failed {len(c.budget.failures)} times within {c.budget.window:.0f} s, "
                         f"last: {how}" + (f": {why}" if why else ""))
        log.warning("component died; restarting", component=c.name, cause=how, last_output=why or None,
                    restart_in_s=wait)
        c.restart_at = now + wait
        for name in c.needed_by:
            dependent = self.components[name]
            if dependent.restart_at is None:
                log.info("restarting a component that depends on it", component=name, because_of=c.name)
                _stop(dependent)
                dependent.restart_at = now + wait

    def _restart(self, c: Component) -> None:
        try:
            c.proc = c.start()
        except (RuntimeError, OSError) as exc:
            self._died(c, f"did not start again ({exc})", self._clock())
            return
        c.restart_at = None
        c.restarts += 1
        log.warning("component restarted", component=c.name, pid=c.proc.pid, restarts=c.restarts)

    def watch(self, every: float = 0.5) -> None:
        """Check until `stop` is called or a component is given up (then `gave_up` says which)."""
        while not self._stopping.wait(every):
            try:
                self.check()
            except GaveUp as exc:
                self.gave_up = exc
                return

    def stop(self) -> None:
        """No more restarts, from now on (a restart under way still finishes)."""
        self._stopping.set()

    def stop_all(self) -> None:
        """Stop every component, the last started first."""
        self.stop()
        for c in reversed(self.components.values()):
            _stop(c)


def _stop(c: Component) -> None:
    if c.proc is not None and c.proc.poll() is None:
        c.stop(c.proc)


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
