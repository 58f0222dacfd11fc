"""One VNPAY stand-in process and one IPN receiver for the package, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.vnpay.standin_harness import (
    Buyer,
    IpnReceiver,
    Standin,
    running_ipn_receiver,
    running_standin,
)


@pytest.fixture(scope="package")
def ipn_receiver() -> Iterator[IpnReceiver]:
    with running_ipn_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="package")
def vnpay_standin(ipn_receiver: IpnReceiver) -> Iterator[Standin]:
    with running_standin(ipn_receiver.url, "--seed", "7") as standin:
        yield standin


@pytest.fixture
def standin(vnpay_standin: Standin, ipn_receiver: IpnReceiver) -> Standin:
    """The shared stand-in with an empty ledger, default switches and a fresh receiver."""
    vnpay_standin.control("POST", "/reset")
    ipn_receiver.reset()
    return vnpay_standin


@pytest.fixture
def buyer(standin: Standin) -> Iterator[Buyer]:
    browser = Buyer(standin)
    try:
        yield browser
    finally:
        browser.client.close()
