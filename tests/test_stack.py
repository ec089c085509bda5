"""`suqiu up`, the README's main job, as a user runs it: its own broker and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg

from suqiu.embedded import free_port
from tests.proc_helpers import descendants, processes


def test_suqiu_up_serves_writes_its_files_and_stops_leaving_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUQIU_")}
    env["SUQIU_HTTP_PORT"] = str(free_port())
    proc = subprocess.Popen([sys.executable, "-m", "suqiu", "--log-level", "WARNING", "up",
                             "--state-dir", str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner: list[str] = []
        deadline = time.monotonic() + 120
        while not banner or not banner[-1].startswith("Ctrl-C"):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"suqiu up did not come up:\n{''.join(banner)}"
            banner.append(line)
        text = "".join(banner)
        endpoints = json.loads((tmp_path / "endpoints.json").read_text())
        keys = json.loads((tmp_path / "keys.json").read_text())
        assert endpoints["http"] in text and endpoints["database_url"] in text
        assert {"intake", "dispatcher", "auditor"} <= set(keys) and all(k["key"] in text for k in keys.values())
        assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
        # Both ways to the embedded PostgreSQL reach the same migrated store.
        for url in (endpoints["database_url"], endpoints["database_tcp_url"]):
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT count(*) FROM jurisdictions").fetchone()[0] > 0  # type: ignore[index]
        with urllib.request.urlopen(f"{endpoints['http']}/v1/health", timeout=10) as resp:
            health = json.loads(resp.read())
        assert resp.status == 200 and health["checks"]["database"] == "ok" and health["checks"]["broker"] == "ok"
        below = descendants(proc.pid)
        assert len(below) >= 4, below  # PostgreSQL, the broker, a worker and the API at least
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Suqiu stopped." in out
    assert not below & processes().keys()
