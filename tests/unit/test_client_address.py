"""The client's address for VNPAY: the peer, or X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import pytest

from eventhunting.client_address import client_address, parse_networks

PROXIES = parse_networks("10.0.0.0/8, 192.168.1.5")


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    assert client_address("203.0.113.9", "198.51.100.1", ()) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client_in_x_forwarded_for() -> None:
    assert client_address("10.1.2.3", "198.51.100.7", PROXIES) == "198.51.100.7"


def test_the_rightmost_untrusted_hop_is_the_client_not_what_the_client_wrote() -> None:
    forwarded = "6.6.6.6, 198.51.100.7, 192.168.1.5"
    assert client_address("10.1.2.3", forwarded, PROXIES) == "198.51.100.7"


def test_an_untrusted_peer_cannot_spoof_the_header() -> None:
    assert client_address("203.0.113.9", "10.9.9.9", PROXIES) == "203.0.113.9"


def test_garbage_in_the_header_falls_back_to_the_last_trusted_hop() -> None:
    assert client_address("10.1.2.3", "not-an-ip", PROXIES) == "10.1.2.3"


def test_a_peer_that_is_not_an_ip_address_becomes_the_loopback_address() -> None:
    assert client_address(None, None, ()) == "127.0.0.1"
    assert client_address("testclient", None, ()) == "127.0.0.1"


def test_bad_proxy_settings_name_the_bad_entry() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        parse_networks("10.0.0.0/8,nonsense")
