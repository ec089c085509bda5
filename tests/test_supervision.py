"""`suqiu up` keeps its components running: restart with backoff, dependents after, give up on a loop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest

from suqiu.stack.embedded import free_port
from suqiu.stack.supervisor import Component, GaveUp, RestartBudget, Supervisor, Tail
from tests.support.procs import descendants, processes
from tests.support.up import call, caught_up, up


def test_restarts_back_off_and_a_crash_loop_is_given_up() -> None:
    budget = RestartBudget(first=0.5, longest=4.0, limit=5, window=60.0)
    assert [budget.failed(t) for t in (0, 1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert budget.failed(5) is None  # the sixth failure within a minute
    calm = RestartBudget(first=0.5, limit=5, window=60.0)
    assert calm.failed(0) == 0.5 and calm.failed(30) == 1.0
    assert calm.failed(200) == 0.5  # ran for longer than the window: a fresh start


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_component_that_keeps_dying_is_given_up_naming_it_and_its_last_words() -> None:
    tail = Tail()

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; print('{\"level\": \"info\", \"event\": \"up\"}');"
                                 "print('RuntimeError: no such database', file=sys.stderr); sys.exit(3)"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        threading.Thread(target=tail.follow, args=(proc.stdout, lambda line: None), daemon=True).start()
        return proc

    sup = Supervisor()
    sup.add(Component("api", start, why=tail.last, budget=RestartBudget(first=0.01, longest=0.05, limit=3)))
    deadline = time.monotonic() + 30
    with pytest.raises(GaveUp) as gave_up:
        while time.monotonic() < deadline:
            sup.check()
            time.sleep(0.02)
    assert str(gave_up.value).startswith("api failed 4 times within 60 s, last: exited with code 3")
    assert "RuntimeError: no such database" in str(gave_up.value)
    assert sup.components["api"].restarts == 3


def test_a_restarted_component_restarts_what_depends_on_it() -> None:
    sup = Supervisor()
    sup.add(Component("broker", _sleeper, needed_by=("worker",), budget=RestartBudget(first=0.01)))
    sup.add(Component("worker", _sleeper, budget=RestartBudget(first=0.01)))
    api = Component("api", _sleeper)
    sup.add(api)
    before = {name: c.proc.pid for name, c in sup.components.items() if c.proc}
    try:
        os.kill(before["broker"], signal.SIGKILL)
        sup.components["broker"].proc.wait()  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while any(c.restart_at is not None or c.restarts == 0 for c in (sup.components["broker"],
                                                                          sup.components["worker"])):
            assert time.monotonic() < deadline
            sup.check()
            time.sleep(0.02)
        after = {name: c.proc.pid for name, c in sup.components.items() if c.proc}
        assert after["broker"] != before["broker"] and after["worker"] != before["worker"]
        assert after["api"] == before["api"] and api.restarts == 0
        assert all(c.proc is not None and c.proc.poll() is None for c in sup.components.values())
    finally:
        sup.stop_all()


class Load:
    """Submits appeals one after another from a thread, retrying through outages, keeping what was acknowledged."""

    def __init__(self, state: Path) -> None:
        endpoints = json.loads((state / "endpoints.json").read_text())
        self.url = f"{endpoints['http']}/v1/appeals"
        self.key = json.loads((state / "keys.json").read_text())["intake"]["key"]
        self.acked: dict[str, str] = {}  # command id -> case id
        self.refused: list[int] = []  # HTTP statuses other than 201 and 503
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        body = {"source_system": "load", "enterprise": {"uscc": "91110000600037341L", "name": "天津某某科技有限公司"},
                "channel": "hotline", "category": "approval", "priority": "normal", "jurisdiction": "tj-binhai",
                "title": "施工许可审批进度", "content": "二期厂房施工许可已提交三周。"}
        while not self._stop.is_set():
            command_id = str(uuid.uuid4())
            # The same command until it is answered: a retry after a lost answer is a duplicate, not a second case.
            while not self._stop.is_set():
                data = json.dumps({**body, "command_id": command_id, "source_ref": f"L-{command_id}"}).encode()
                request = urllib.request.Request(self.url, data=data, method="POST", headers={
                    "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=10) as resp:
                        self.acked[command_id] = json.loads(resp.read())["case_id"]
                    break
                except urllib.error.HTTPError as exc:
                    if exc.code != 503:
                        self.refused.append(exc.code)
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            time.sleep(0.02)

    def served_after(self, count: int, bound: float) -> None:
        """Until more than `count` commands are acknowledged, within `bound` seconds."""
        deadline = time.monotonic() + bound
        while len(self.acked) <= count:
            assert time.monotonic() < deadline, f"no command acknowledged within {bound} s"
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _pid(root: int, needle: bytes) -> int:
    found = [p for p in descendants(root) if needle in processes().get(p, (0, b""))[1]]
    assert len(found) == 1, (needle, found)
    return found[0]


COMPONENTS = {"api": b"suqiu\0api", "worker": b"suqiu\0worker", "broker": b"tansu\0broker", "postgres": b"postgres\0-D"}


def test_suqiu_up_heals_each_component_killed_under_load_and_loses_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUQIU_")}
    env["SUQIU_HTTP_PORT"] = str(free_port())
    state, log = tmp_path / "state", tmp_path / "up.log"
    proc = up(state, env, log)
    load = Load(state)
    try:
        load.served_after(5, 60)
        for name, needle in COMPONENTS.items():
            victim = _pid(proc.pid, needle)
            os.kill(victim, signal.SIGKILL)
            seen = len(load.acked)
            load.served_after(seen + 5, 60)  # serving again, within the bound
            restarted = re.compile(f'"component": "{name}", "pid": (\\d+), "restarts": 1,')
            deadline = time.monotonic() + 60
            while not (found := restarted.search(log.read_text())):
                assert time.monotonic() < deadline, f"no restart of {name} logged"
                time.sleep(0.2)
            assert int(found.group(1)) == _pid(proc.pid, needle) != victim
        load.stop()
        assert load.refused == []
        caught_up(state, len(load.acked))
        with psycopg.connect(json.loads((state / "endpoints.json").read_text())["database_url"]) as conn:
            stored = {r[0] for r in conn.execute("SELECT case_id FROM events WHERE seq = 1")}
            viewed = {r[0] for r in conn.execute("SELECT case_id FROM case_view")}
        assert set(load.acked.values()) <= stored and set(load.acked.values()) <= viewed
        assert len(stored) == len(load.acked)  # no retry made a second case
        assert call(state, "auditor", "GET", "/v1/health")["status"] == "ok"
        below = descendants(proc.pid)
    finally:
        load.stop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    assert proc.returncode == 0 and not below & processes().keys()
    text = log.read_text()
    assert "Suqiu stopped." in text and "keeps failing" not in text
    assert "\x1b" not in text  # no terminal controls in a log that is not a terminal
    # One log line per command at INFO, not one per event. A command whose answer was lost to a
    # kill is answered again on retry as a repeat, and the killed process may not have logged it.
    answered = {json.loads(line)["command_id"]
                for line in re.findall(r'^\{.*"event": "command (?:stored|repeated)".*\}$', text, re.M)}
    assert set(load.acked) <= answered and "event stored" not in text
