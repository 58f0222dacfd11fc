"""Settings are read from EVENTHUNTING_* variables and fail with one line naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eventhunting.settings import SettingsError, StoreSettings, field_specs, load_settings
from eventhunting.store.redis_client import ClusterUrl, parse_cluster_url

VALID = {
    "EVENTHUNTING_REDIS_URL": "redis://127.0.0.1:6390/0",
    "EVENTHUNTING_MONGODB_URL": "mongodb://127.0.0.1:27017/tickets?replicaSet=rs0",
    "EVENTHUNTING_JWT_SECRET": "x" * 40,
}


def test_valid_environment_gives_typed_settings_with_defaults() -> None:
    settings = load_settings({**VALID, "EVENTHUNTING_HOLD_SECONDS": "60"}, dotenv=None)
    assert settings.redis.url == VALID["EVENTHUNTING_REDIS_URL"]
    assert settings.mongodb.database == "tickets"
    assert settings.sales.hold_seconds == 60
    assert settings.sales.partitions == 16
    assert settings.auth.access_token_seconds == 900


@pytest.mark.parametrize(
    ("url", "node_url", "seeds"),
    [
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
            "redis://10.0.0.1:7000",
            (("10.0.0.1", 7000), ("10.0.0.2", 7001)),
        ),
        (
            "rediss+cluster://user:s%40cret@redis-a:7000/?ssl_cert_reqs=none",
            "rediss://user:s%40cret@redis-a:7000?ssl_cert_reqs=none",
            (("redis-a", 7000),),
        ),
        ("redis+cluster://redis-a", "redis://redis-a:6379", (("redis-a", 6379),)),
    ],
)
def test_a_redis_cluster_is_named_by_its_seed_nodes(
    url: str, node_url: str, seeds: tuple[tuple[str, int], ...]
) -> None:
    settings = load_settings({**VALID, "EVENTHUNTING_REDIS_URL": url}, dotenv=None)
    assert settings.redis.url == url
    assert parse_cluster_url(url) == ClusterUrl(node_url=node_url, seeds=seeds)
    assert parse_cluster_url(VALID["EVENTHUNTING_REDIS_URL"]) is None


def test_mongodb_database_defaults_to_eventhunting_when_url_has_no_path() -> None:
    settings = load_settings(
        {**VALID, "EVENTHUNTING_MONGODB_URL": "mongodb://db:27017/?replicaSet=rs0"}, dotenv=None
    )
    assert settings.mongodb.database == "eventhunting"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EVENTHUNTING_REDIS_URL", None, "EVENTHUNTING_REDIS_URL is required"),
        ("EVENTHUNTING_MONGODB_URL", None, "EVENTHUNTING_MONGODB_URL is required"),
        ("EVENTHUNTING_JWT_SECRET", None, "EVENTHUNTING_JWT_SECRET is required"),
        ("EVENTHUNTING_JWT_SECRET", "short", "EVENTHUNTING_JWT_SECRET is invalid"),
        ("EVENTHUNTING_REDIS_URL", "http://x", "EVENTHUNTING_REDIS_URL must be a URL"),
        ("EVENTHUNTING_MONGODB_URL", "redis://x", "EVENTHUNTING_MONGODB_URL must be a URL"),
        ("EVENTHUNTING_HOLD_SECONDS", "soon", "EVENTHUNTING_HOLD_SECONDS is invalid"),
        ("EVENTHUNTING_HOLD_SECONDS", "0", "EVENTHUNTING_HOLD_SECONDS is invalid"),
        ("EVENTHUNTING_PARTITIONS", "-3", "EVENTHUNTING_PARTITIONS is invalid"),
        ("EVENTHUNTING_LOG_LEVEL", "LOUD", "EVENTHUNTING_LOG_LEVEL is invalid"),
        ("EVENTHUNTING_SMTP_URL", "mail.example.com", "EVENTHUNTING_SMTP_URL must be a URL"),
        ("EVENTHUNTING_REDIS_URL", "redis+cluster://", "EVENTHUNTING_REDIS_URL is invalid"),
        (
            "EVENTHUNTING_REDIS_URL",
            "redis+cluster://a:7000,b:x",
            "EVENTHUNTING_REDIS_URL is invalid",
        ),
        ("EVENTHUNTING_REDIS_URL", "redis+cluster://a:7000/2", "EVENTHUNTING_REDIS_URL is invalid"),
        ("EVENTHUNTING_REDIS_URL", "cluster://a:7000", "EVENTHUNTING_REDIS_URL must be a URL"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str | None, expected: str) -> None:
    environment = dict(VALID)
    if value is None:
        environment.pop(variable)
    else:
        environment[variable] = value
    with pytest.raises(SettingsError) as raised:
        load_settings(environment, dotenv=None)
    message = str(raised.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_dotenv_fills_gaps_but_never_overrides_the_environment(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# local settings\n"
        "EVENTHUNTING_HOLD_SECONDS=120\n"
        'export EVENTHUNTING_JWT_SECRET="from-dotenv-from-dotenv-from-dotenv-1234"\n',
        encoding="utf-8",
    )
    settings = load_settings(VALID, dotenv=dotenv)
    assert settings.sales.hold_seconds == 120
    assert settings.auth.jwt_secret == VALID["EVENTHUNTING_JWT_SECRET"]


def test_every_setting_has_a_prefixed_variable_and_a_description() -> None:
    specs = field_specs()
    names = [spec.env for spec in specs]
    assert len(names) == len(set(names))
    for spec in specs:
        assert spec.env.startswith("EVENTHUNTING_")
        assert spec.description


def test_api_command_with_bad_settings_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventhunting.cli", "api"],
        env={"EVENTHUNTING_REDIS_URL": "nonsense", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "eventhunting: EVENTHUNTING_REDIS_URL must be a URL starting with"
        " redis://, rediss://, unix://, redis+cluster://, rediss+cluster://"
    ]


def run_command(*arguments: str, environment: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    result = subprocess.run(
        [sys.executable, "-m", "eventhunting.cli", *arguments],
        env={"PATH": "/usr/bin:/bin", **environment},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.parametrize("command", [["api"], ["worker", "projector"]])
def test_serving_commands_without_a_jwt_secret_print_one_line_naming_it(
    tmp_path: Path, command: list[str]
) -> None:
    environment = {key: value for key, value in VALID.items() if "JWT" not in key}
    returncode, lines = run_command(*command, environment=environment, cwd=tmp_path)
    assert returncode == 2
    assert len(lines) == 1
    assert lines[0].startswith("eventhunting: EVENTHUNTING_JWT_SECRET is required")


@pytest.mark.parametrize("command", ["replay", "restore"])
def test_maintenance_commands_still_name_a_missing_redis_url_in_one_line(
    tmp_path: Path, command: str
) -> None:
    environment = {"EVENTHUNTING_MONGODB_URL": VALID["EVENTHUNTING_MONGODB_URL"]}
    returncode, lines = run_command(command, environment=environment, cwd=tmp_path)
    assert returncode == 2
    assert lines == [
        "eventhunting: EVENTHUNTING_REDIS_URL is required: Redis URL (redis:// or rediss://),"
        " or Redis Cluster seed nodes (redis+cluster://host1:7000,host2:7001 or rediss+cluster://)."
    ]


def test_store_settings_ignore_what_only_serving_commands_use() -> None:
    environment = {
        "EVENTHUNTING_REDIS_URL": VALID["EVENTHUNTING_REDIS_URL"],
        "EVENTHUNTING_MONGODB_URL": VALID["EVENTHUNTING_MONGODB_URL"],
        "EVENTHUNTING_JWT_SECRET": "short",
        "EVENTHUNTING_PARTITIONS": "8",
    }
    settings = load_settings(environment, dotenv=None, schema=StoreSettings)
    assert settings.sales.partitions == 8
    assert not hasattr(settings, "auth")
    with pytest.raises(SettingsError, match=r"^EVENTHUNTING_JWT_SECRET is invalid"):
        load_settings(environment, dotenv=None)


def test_account_state_cache_longer_than_the_access_token_lifetime_is_refused() -> None:
    environment = {
        **VALID,
        "EVENTHUNTING_ACCESS_TOKEN_SECONDS": "60",
        "EVENTHUNTING_ACCOUNT_STATE_CACHE_SECONDS": "61",
    }
    with pytest.raises(SettingsError) as raised:
        load_settings(environment, dotenv=None)
    assert str(raised.value).startswith("EVENTHUNTING_ACCOUNT_STATE_CACHE_SECONDS is invalid")
    assert "EVENTHUNTING_ACCESS_TOKEN_SECONDS" in str(raised.value)


def test_account_state_cache_defaults_to_a_few_seconds() -> None:
    assert load_settings(VALID, dotenv=None).auth.account_state_cache_seconds == 5


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [spec.env for spec in field_specs() if f"`{spec.env}`" not in readme]
    assert missing == []
