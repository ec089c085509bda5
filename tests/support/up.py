"""`suqiu up` as a user runs it, for tests: start it on a state directory, call its API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg


def up(state_dir: Path, env: dict[str, str], log: Path, command: tuple[str, ...] = (sys.executable, "-m", "suqiu"),
       cwd: Path | None = None) -> subprocess.Popen[str]:
    """`suqiu up` on `state_dir`, once its banner is out (its output goes to `log`); `command` is
    how to run `suqiu` (this environment's, or an installed console script)."""
    start = log.stat().st_size if log.exists() else 0
    with open(log, "a") as out:
        proc = subprocess.Popen([*command, "up", "--state-dir", str(state_dir)], env=env, cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while "\nCtrl-C" not in log.read_text()[start:]:
        assert proc.poll() is None and time.monotonic() < deadline, f"suqiu up did not come up:\n{log.read_text()}"
        time.sleep(0.3)
    return proc


def call(state_dir: Path, role: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    http = json.loads((state_dir / "endpoints.json").read_text())["http"]
    key = json.loads((state_dir / "keys.json").read_text())[role]["key"]
    request = urllib.request.Request(f"{http}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def caught_up(state_dir: Path, events: int) -> None:
    """Until the read models reflect `events` stored events (/v1/health's lag)."""
    deadline = time.monotonic() + 120
    while True:
        lag = call(state_dir, "auditor", "GET", "/v1/health")["checks"]["lag"]
        with psycopg.connect(json.loads((state_dir / "endpoints.json").read_text())["database_url"]) as conn:
            applied = conn.execute("SELECT coalesce(sum(applied), 0) FROM projection_offsets").fetchone()
        if lag["outbox"] == 0 and applied is not None and applied[0] >= events:
            return
        assert time.monotonic() < deadline, f"read models did not catch up: {lag}, applied {applied}"
        time.sleep(0.5)
