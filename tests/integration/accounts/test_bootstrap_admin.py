"""The start-up hook that creates the admin from settings."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from eventhunting.api.accounts import create_bootstrap_admin
from eventhunting.bootstrap import build_services
from eventhunting.settings import SettingsError, load_settings


def settings_for(redis_url: str, mongodb_url: str, **extra: str) -> dict[str, str]:
    return {
        "EVENTHUNTING_REDIS_URL": redis_url,
        "EVENTHUNTING_MONGODB_URL": mongodb_url,
        "EVENTHUNTING_JWT_SECRET": "bootstrap-test-" + "q" * 40,
        "EVENTHUNTING_PASSWORD_HASH_PROFILE": "test",
        **{f"EVENTHUNTING_{name.upper()}": value for name, value in extra.items()},
    }


async def test_hook_creates_the_admin_once(
    redis_url: str, mongodb_url: str, redis_client: aioredis.Redis
) -> None:
    email = f"boot-{uuid.uuid4().hex[:8]}@example.com"
    environment = settings_for(
        redis_url,
        mongodb_url,
        bootstrap_admin_email=email,
        bootstrap_admin_password="a long admin password",
    )
    services = await build_services(load_settings(environment, dotenv=None))
    try:
        await create_bootstrap_admin(services)
        await create_bootstrap_admin(services)
        admin = await services.accounts.find_by_email(email)
        assert admin is not None
        assert admin.roles == {"customer", "admin"}
        assert admin.version == 1
    finally:
        await services.close()


async def test_hook_does_nothing_without_both_settings(
    redis_url: str, mongodb_url: str, redis_client: aioredis.Redis
) -> None:
    email = f"boot-{uuid.uuid4().hex[:8]}@example.com"
    environment = settings_for(redis_url, mongodb_url, bootstrap_admin_email=email)
    services = await build_services(load_settings(environment, dotenv=None))
    try:
        await create_bootstrap_admin(services)
        assert await services.accounts.find_by_email(email) is None
    finally:
        await services.close()


async def test_weak_admin_password_stops_start_up_naming_the_variable(
    redis_url: str, mongodb_url: str, redis_client: aioredis.Redis
) -> None:
    environment = settings_for(
        redis_url,
        mongodb_url,
        bootstrap_admin_email="boot@example.com",
        bootstrap_admin_password="short",
    )
    services = await build_services(load_settings(environment, dotenv=None))
    try:
        with pytest.raises(SettingsError, match="EVENTHUNTING_BOOTSTRAP_ADMIN_PASSWORD"):
            await create_bootstrap_admin(services)
    finally:
        await services.close()
