"""`suqiu up`, the README's main job, as a user runs it: its own broker and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg

from suqiu.stack.embedded import free_port
from tests.support.procs import descendants, processes
from tests.support.up import call, caught_up, up


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
        assert {"intake", "dispatcher", "auditor"} <= set(keys)
        assert not any(k["key"] in text for k in keys.values()), "secrets stay in keys.json, never on stdout"
        assert str((tmp_path / "keys.json").resolve()) in text
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


def test_suqiu_up_again_on_its_state_dir_republishes_onto_a_new_topic(tmp_path: Path) -> None:
    # The embedded broker starts empty each time, PostgreSQL keeps the store: the relay finds its
    # epoch missing, creates the events topic again and republishes, under a running Faust worker.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUQIU_")}
    env["SUQIU_HTTP_PORT"] = str(free_port())
    state, log = tmp_path / "state", tmp_path / "up.log"
    submit = {"source_system": "hotline-12345", "enterprise": {"uscc": "91110000600037341L", "name": "天津某某科技有限公司"},
              "channel": "hotline", "category": "approval", "priority": "normal", "jurisdiction": "tj-binhai",
              "title": "施工许可审批进度", "content": "二期厂房施工许可已提交三周。"}
    proc = up(state, env, log)
    try:
        first = call(state, "intake", "POST", "/v1/appeals", {**submit, "command_id": str(uuid.uuid4()),
                                                                  "source_ref": "TJ-1"})["case_id"]
        caught_up(state, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    proc = up(state, env, log)
    try:
        call(state, "dispatcher", "POST", f"/v1/appeals/{first}/commands",
              {"type": "dispatch", "command_id": str(uuid.uuid4()), "department": "bh-market"})
        second = call(state, "intake", "POST", "/v1/appeals", {**submit, "command_id": str(uuid.uuid4()),
                                                                   "source_ref": "TJ-2"})["case_id"]
        caught_up(state, 3)
        with psycopg.connect(json.loads((state / "endpoints.json").read_text())["database_url"]) as conn:
            views: dict[str, int] = dict(conn.execute("SELECT case_id, seq FROM case_view").fetchall())
        below = descendants(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert views == {first: 2, second: 1}
    assert proc.returncode == 0 and not below & processes().keys()
    text = log.read_text()
    assert "broker does not hold the relay's epoch" in text and "topics created again, empty" in text
    assert '"level": "error"' not in text and "Traceback" not in text


def test_suqiu_up_on_a_port_something_listens_on_refuses_to_share_it(tmp_path: Path) -> None:
    # The API binds with SO_REUSEPORT: next to another stack's API it would take half its requests.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUQIU_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env["SUQIU_HTTP_PORT"] = str(taken.getsockname()[1])
        done = subprocess.run([sys.executable, "-m", "suqiu", "up", "--state-dir", str(tmp_path / "state")],
                              env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "something already listens on" in done.stderr, done
    assert not (tmp_path / "state" / "endpoints.json").exists()
