"""The wheel as a user installs it: one import name, beside public packages called schemas and replay."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from suqiu.stack.embedded import free_port
from tests.conftest import submission
from tests.support.up import call, up

ROOT = Path(__file__).resolve().parent.parent
# Public packages whose names the required top-level folders share.
NEIGHBOURS = ("schemas==0.7.1", "replay==0.1.2")


def test_the_wheel_installs_only_suqiu_and_runs_beside_public_schemas_and_replay(tmp_path: Path) -> None:
    # Built from a copy, links kept as links, so the build leaves nothing in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".suqiu", "build", "*.egg-info", "__pycache__", ".*_cache", "test-artifacts"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source)],
                   check=True, timeout=300)
    wheel = next(dist.glob("suqiu-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["suqiu"]
    assert {n.split("/")[0] for n in names} == {"suqiu", wheel.name.split("-py")[0] + ".dist-info"}
    for module in ("suqiu/streams/app.py", "suqiu/schemas/codec.py", "suqiu/projections/projector.py",
                   "suqiu/replay/cli.py", "suqiu/schemas/avro/events/Envelope.avsc", "suqiu/sql/001_event_store.sql"):
        assert module in names, module

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*pip, str(wheel), *NEIGHBOURS], check=True, timeout=300)
    # Suqiu's dependencies come from this environment's site-packages, read as a plain path: its
    # .pth files (this checkout's editable suqiu) are not run, so the wheel is the only suqiu.
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # The public schemas is Python 2 code: found where pip put it, not imported.
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util, suqiu.schemas.codec, suqiu.replay.cli, suqiu.streams.app; "
         "print(*(importlib.util.find_spec(n).origin for n in ('schemas', 'replay')), suqiu.schemas.codec.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path).stdout.split()
    assert [Path(p).relative_to(site).parts[0] for p in found] == ["schemas", "replay", "suqiu"], found

    env = {k: v for k, v in os.environ.items() if not k.startswith("SUQIU_")}
    env["SUQIU_HTTP_PORT"] = str(free_port())
    state = tmp_path / "state"
    proc = up(state, env, tmp_path / "up.log", command=(str(venv / "bin" / "suqiu"),), cwd=tmp_path)
    try:
        case_id = call(state, "intake", "POST", "/v1/appeals", submission())["case_id"]
        history = call(state, "auditor", "GET", f"/v1/appeals/{case_id}/history")
        assert [e["event_type"] for e in history["events"]] == ["AppealSubmitted"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, (tmp_path / "up.log").read_text()[-2000:]
