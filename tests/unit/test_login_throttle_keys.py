"""Login throttle keys: each script's keys share one Redis Cluster slot and hide the email."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from eventhunting.services.login_throttle import (
    account_address_key,
    account_key,
    address_key,
    spacing_key,
)

ADDRESSES = ["10.0.0.1", "2001:db8::1", "unknown", "host-{with}-braces"]


@pytest.mark.parametrize("address", ADDRESSES)
def test_keys_of_one_email_share_a_cluster_slot_whatever_the_address(address: str) -> None:
    email = "ana@example.com"
    slots = {
        key_slot(key.encode())
        for key in (account_address_key(email, address), account_key(email), spacing_key(email))
    }
    assert len(slots) == 1


def test_keys_of_different_emails_spread_over_slots() -> None:
    slots = {key_slot(account_key(f"user-{index}@example.com").encode()) for index in range(50)}
    assert len(slots) > 40


def test_keys_never_contain_the_email() -> None:
    email = "ana@example.com"
    for key in (account_address_key(email, "10.0.0.1"), account_key(email), spacing_key(email)):
        assert "ana" not in key
    assert address_key("10.0.0.1") == "login-failures:address:{10.0.0.1}"
