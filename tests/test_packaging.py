"""The production compose file and the CLI agree; the compose file keeps the embedded names."""

from __future__ import annotations

from pathlib import Path

import yaml

from suqiu.cli import main, subcommands

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


def test_cli_help_runs() -> None:
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
