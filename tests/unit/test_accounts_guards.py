"""Principal role checks, guard declarations, and argon2id password hashing."""

from __future__ import annotations

import pytest

from eventhunting.api.auth import Principal, requires_roles, signed_in
from eventhunting.services.passwords import Passwords


def principal(*roles: str, staff: frozenset[str] = frozenset()) -> Principal:
    return Principal(
        account_id="a",
        email="a@example.com",
        roles=frozenset({"customer", *roles}),
        staff_events=staff,
    )


def test_customer_lacks_organizer_and_admin() -> None:
    assert not principal().has_any_role(["organizer"])
    assert not principal().has_role("admin")


def test_admin_passes_every_role_check_and_counts_as_staff_everywhere() -> None:
    admin = principal("admin")
    assert admin.has_role("organizer")
    assert admin.has_any_role(["organizer"])
    assert admin.is_staff_for("ANY-EVENT")


def test_staff_is_per_event() -> None:
    staff = principal(staff=frozenset({"E1"}))
    assert staff.is_staff_for("E1")
    assert not staff.is_staff_for("E2")


def test_requires_roles_refuses_unknown_roles_and_empty_lists() -> None:
    with pytest.raises(ValueError, match="unknown roles"):
        requires_roles("staff")
    with pytest.raises(ValueError, match="at least one role"):
        requires_roles()


def test_guards_expose_the_roles_they_require() -> None:
    assert requires_roles("organizer", "admin").roles == ("admin", "organizer")
    assert signed_in.roles == ()


async def test_password_hashes_are_argon2id_and_verify_only_the_right_password() -> None:
    passwords = Passwords("test")
    hashed = await passwords.hash("correct horse")
    assert hashed.startswith("$argon2id$")
    assert await passwords.verify(hashed, "correct horse")
    assert not await passwords.verify(hashed, "wrong horse")


async def test_verify_without_a_hash_is_false_even_for_the_dummy_password() -> None:
    passwords = Passwords("test")
    assert not await passwords.verify(None, "anything")


def test_standard_profile_uses_the_recommended_argon2id_cost() -> None:
    hasher = Passwords("standard").hasher
    assert hasher.time_cost >= 2
    assert hasher.memory_cost >= 19 * 1024
