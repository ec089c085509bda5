"""The production compose file and the CLI agree; the compose file keeps the embedded names."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from suqiu.base.config import Settings
from suqiu.base.metrics import Metrics
from suqiu.base.sealing import MasterKey
from suqiu.cli.main import main, subcommands
from tests.conftest import run_cli

ROOT = Path(__file__).parent.parent


def test_compose_services_run_existing_cli_commands_with_the_embedded_variable_names() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "postgres", "migrate", "worker", "api"} <= set(services)
    assert "KRaft" in (ROOT / "docker-compose.yml").read_text()
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:16")
    commands = subcommands()
    for name in ("migrate", "worker", "api"):
        svc = services[name]
        assert svc["command"][0] in commands, name
        env = svc["environment"]
        assert {"SUQIU_KAFKA_BOOTSTRAP", "SUQIU_DATABASE_URL", "SUQIU_SYSTEM_ID", "SUQIU_TOPIC_PREFIX"} <= set(env)
    assert {"up", "worker", "api", "migrate"} <= commands
    # Personal data: both processes get the master key as a compose secret, never in the environment.
    for name in ("worker", "api"):
        assert services[name]["secrets"] == ["suqiu_master_key"], name
        assert services[name]["environment"]["SUQIU_MASTER_KEY_FILE"] == "/run/secrets/suqiu_master_key"
    assert compose["secrets"]["suqiu_master_key"]["file"] == "./secrets/master.key"


def test_the_compose_master_key_script_writes_a_key_once(tmp_path: Path) -> None:
    key = tmp_path / "secrets" / "master.key"
    script = str(ROOT / "scripts" / "master-key.sh")
    assert subprocess.run(["bash", script, str(key)], capture_output=True).returncode == 0
    assert key.stat().st_mode & 0o777 == 0o600
    MasterKey.from_file(key)  # a key the processes accept
    first = key.read_bytes()
    assert subprocess.run(["bash", script, str(key)], capture_output=True).returncode == 2
    assert key.read_bytes() == first


def test_the_embedded_stacks_endpoints_fill_in_only_when_the_environment_names_neither(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints.json"
    assert Settings().beside_embedded(endpoints) == Settings()  # no stack here
    endpoints.write_text(json.dumps({"http": "http://127.0.0.1:8080", "kafka_bootstrap": "127.0.0.1:9",
                                     "database_url": "postgresql://postgres@/postgres?host=/x&port=5"}))
    embedded = Settings().beside_embedded(endpoints)
    assert (embedded.kafka_bootstrap, embedded.database_url) == ("127.0.0.1:9", "postgresql://postgres@/postgres?host=/x&port=5")
    for named in (Settings(database_url="postgresql://db/prod"), Settings(kafka_bootstrap="kafka:9092")):
        assert named.beside_embedded(endpoints) is named  # the environment wins, and is not completed
    for garbled in ('{"kafka_bootstrap": "127.0.0.1:9"', '{"kafka_bootstrap": 9, "database_url": []}', "[]"):
        endpoints.write_text(garbled)  # cut short by a full disk, or edited by hand
        with pytest.raises(SystemExit, match="not the endpoints file `suqiu up` writes"):
            Settings().beside_embedded(endpoints)


def test_a_command_that_cannot_reach_the_database_says_so_in_a_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("SUQIU_DATABASE_URL", "SUQIU_KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".suqiu").mkdir()
    (tmp_path / ".suqiu" / "endpoints.json").write_text(json.dumps(  # a stack that has stopped
        {"kafka_bootstrap": "127.0.0.1:9", "database_url": f"postgresql://postgres@/postgres?host={tmp_path}&port=9"}))
    monkeypatch.chdir(tmp_path)
    assert run_cli(["--log-level", "WARNING", "keys", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cannot reach PostgreSQL (from .suqiu/endpoints.json") and "Traceback" not in err, err


def test_import_workers_must_be_a_number_of_processes(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-2", "many", "1000"):
        with pytest.raises(SystemExit) as refused:
            run_cli(["import", "rows.csv", "--mapping", "map.toml", "--workers", bad])
        assert refused.value.code == 2 and "a number of processes from 1 to 64" in capsys.readouterr().err


def test_cli_help_runs() -> None:
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0


def test_the_monitoring_profile_scrapes_every_process_and_the_dashboard_shows_only_exported_metrics() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"] == services["grafana"]["profiles"]
    for svc in ("prometheus", "grafana"):
        for mount in services[svc]["volumes"]:
            source = mount.split(":", 1)[0]
            assert not source.startswith("./") or (ROOT / source).exists(), mount
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    assert jobs["suqiu-api"]["static_configs"][0]["targets"] == [f"api:{services['api']['environment']['SUQIU_HTTP_PORT']}"]
    assert jobs["suqiu-worker"]["dns_sd_configs"][0]["port"] == int(services["worker"]["environment"]["SUQIU_METRICS_PORT"])

    exported = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        exported |= {family.name + s for s in suffixes}
    dashboard = json.loads((ROOT / "deploy/grafana/suqiu.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\bsuqiu_[a-z_]+", target["expr"])}
    assert used and used <= exported, used - exported
    # Every metric the code exports has a panel: a figure no one can see is not watched.
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
    assert {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in exported} <= shown
