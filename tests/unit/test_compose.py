"""compose.yaml cannot run here (no container engine), so its wiring is checked by reading."""

from __future__ import annotations

import itertools
import re
import subprocess
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


def cluster_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}


def test_the_cluster_profile_runs_six_cluster_nodes_with_aof_always_and_forms_them_once() -> None:
    services = load_compose()["services"]
    profiled = cluster_services(services)
    nodes = sorted(name for name in profiled if name.startswith("redis-node-"))
    assert nodes == [f"redis-node-{n}" for n in range(1, 7)]
    for name in nodes:
        command = " ".join(services[name]["command"])
        assert "--cluster-enabled yes" in command
        assert "--appendonly yes --appendfsync always" in command
        assert services[name]["hostname"] == name
        assert f"{name}-data:/data" in services[name]["volumes"]
    create = profiled["redis-cluster-create"]
    assert set(create["depends_on"]) == set(nodes)
    assert "--cluster-replicas 1" in create["command"][-1]
    assert "for node in 1 2 3 4 5 6" in create["command"][-1]


def test_the_cluster_profile_shell_commands_parse(tmp_path: Path) -> None:
    for name, service in cluster_services(load_compose()["services"]).items():
        command = service["command"]
        assert command[:2] == ["sh", "-c"], name
        # Compose turns `$$` into `$` before the shell sees the command.
        script = tmp_path / f"{name}.sh"
        script.write_text(command[2].replace("$$", "$"))
        checked = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, (name, checked.stderr)


def test_without_the_profile_no_service_needs_a_cluster_service() -> None:
    services = load_compose()["services"]
    profiled = set(cluster_services(services))
    for name, service in services.items():
        if name in profiled:
            continue
        for needed, condition in (service.get("depends_on") or {}).items():
            if needed in profiled:
                assert condition.get("required") is False, (name, needed)


def test_app_services_wait_for_the_cluster_and_take_their_redis_url_from_the_environment() -> None:
    document = load_compose()
    services = document["services"]
    for name in ("api", "archiver", "projector", "expirer", "reconciler", "mailer"):
        assert services[name]["depends_on"]["redis-cluster-create"] == {
            "condition": "service_completed_successfully",
            "required": False,
        }
        url = services[name]["environment"]["EVENTHUNTING_REDIS_URL"]
        assert url == "${EVENTHUNTING_REDIS_URL:-redis://redis:6379/0}"
    seeds = document["x-cluster-redis-url"].removeprefix("redis+cluster://").split(",")
    assert seeds == [f"redis-node-{n}:6379" for n in range(1, 4)]


def test_the_documented_cluster_url_is_a_valid_redis_setting() -> None:
    from eventhunting.store.redis_client import parse_cluster_url

    url = load_compose()["x-cluster-redis-url"]
    cluster = parse_cluster_url(url)
    assert cluster is not None
    assert cluster.seeds == tuple((f"redis-node-{n}", 6379) for n in range(1, 4))
