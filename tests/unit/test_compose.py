"""compose.yaml cannot run here (no container engine), so its wiring is checked by reading."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from eventhunting.settings import field_specs
from eventhunting.workers import WORKERS

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"
REQUIRED_ENV = {"EVENTHUNTING_REDIS_URL", "EVENTHUNTING_MONGODB_URL", "EVENTHUNTING_JWT_SECRET"}


def load_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


def test_every_eventhunting_variable_in_compose_is_a_known_setting() -> None:
    known = {spec.env for spec in field_specs()}
    used = set(re.findall(r"\b(EVENTHUNTING_[A-Z0-9_]+)\b", COMPOSE.read_text(encoding="utf-8")))
    assert used - known == set()


def test_app_services_get_every_required_setting() -> None:
    services = load_compose()["services"]
    for name in ("api", "archiver", "projector", "expirer"):
        environment = services[name]["environment"]
        assert set(environment) >= REQUIRED_ENV, name


def test_workers_in_compose_are_workers_the_cli_knows() -> None:
    services = load_compose()["services"]
    for service in services.values():
        command = service.get("command") or []
        if command[:2] == ["eventhunting", "worker"]:
            names = list(itertools.takewhile(lambda word: not word.startswith("--"), command[2:]))
            assert names, command
            for worker in names:
                assert worker in WORKERS, worker


def test_mongodb_runs_as_a_replica_set_and_redis_fsyncs_every_write() -> None:
    services = load_compose()["services"]
    assert "--replSet" in services["mongodb"]["command"]
    assert "replicaSet=rs0" in services["api"]["environment"]["EVENTHUNTING_MONGODB_URL"]
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendfsync") + 1] == "always"
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
