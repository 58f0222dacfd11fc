"""The VNPAY stand-in's IPN calls: retried until the merchant answers 00 or 02, at most 10."""

from __future__ import annotations

import time
from itertools import pairwise

from tests.integration.vnpay.standin_harness import (
    IPN_MAX_CALLS,
    IPN_RETRY_SECONDS,
    Buyer,
    IpnReceiver,
    Standin,
    payment_url,
    wait_until,
)


def ipn_state(standin: Standin, txn_ref: str) -> str:
    state: str = standin.transaction(txn_ref)["ipn"]
    return state


def test_the_ipn_is_retried_until_the_merchant_answers_00(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver
) -> None:
    ipn_receiver.script.extend(["99", "01", "04", "97"])

    buyer.pay(payment_url(standin, "IPN-RETRY"))

    wait_until(lambda: ipn_state(standin, "IPN-RETRY") == "confirmed", what="confirmation")
    calls = ipn_receiver.calls_for("IPN-RETRY")
    assert [call.answered for call in calls] == ["99", "01", "04", "97", "00"]
    assert all(call.signature_valid for call in calls)
    gaps = [later.received_at - earlier.received_at for earlier, later in pairwise(calls)]
    assert min(gaps) >= IPN_RETRY_SECONDS * 0.9
    time.sleep(IPN_RETRY_SECONDS * 3)
    assert len(ipn_receiver.calls_for("IPN-RETRY")) == 5
    attempts = standin.transaction("IPN-RETRY")["ipn_attempts"]
    assert [a["outcome"] for a in attempts] == ["refused"] * 4 + ["confirmed"]
    assert [a["rsp_code"] for a in attempts] == ["99", "01", "04", "97", "00"]


def test_the_ipn_stops_when_the_merchant_answers_02(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver
) -> None:
    ipn_receiver.script.extend(["99", "02"])

    buyer.pay(payment_url(standin, "IPN-02"))

    wait_until(lambda: ipn_state(standin, "IPN-02") == "confirmed", what="confirmation")
    time.sleep(IPN_RETRY_SECONDS * 3)
    assert [call.answered for call in ipn_receiver.calls_for("IPN-02")] == ["99", "02"]


def test_a_slow_or_failing_merchant_counts_as_unconfirmed_and_is_called_again(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver
) -> None:
    ipn_receiver.script.extend(["timeout", "http500"])

    buyer.pay(payment_url(standin, "IPN-SLOW"))

    wait_until(lambda: ipn_state(standin, "IPN-SLOW") == "confirmed", what="confirmation")
    attempts = standin.transaction("IPN-SLOW")["ipn_attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "refused", "confirmed"]
    assert attempts[0]["error"] == "ReadTimeout"
    assert attempts[1]["http_status"] == 500


def test_the_ipn_gives_up_after_ten_calls(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver
) -> None:
    ipn_receiver.script.extend(["99"] * (IPN_MAX_CALLS + 5))

    buyer.pay(payment_url(standin, "IPN-GIVE-UP"))

    wait_until(lambda: ipn_state(standin, "IPN-GIVE-UP") == "gave_up", what="giving up")
    time.sleep(IPN_RETRY_SECONDS * 3)
    assert len(ipn_receiver.calls_for("IPN-GIVE-UP")) == IPN_MAX_CALLS


def test_dropped_ipns_never_reach_the_merchant_until_dropping_stops(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver
) -> None:
    standin.switches(drop_ipns=True)

    buyer.pay(payment_url(standin, "IPN-DROP"))

    wait_until(
        lambda: len(standin.transaction("IPN-DROP")["ipn_attempts"]) >= 2, what="dropped calls"
    )
    assert ipn_receiver.calls_for("IPN-DROP") == []
    standin.switches(drop_ipns=False)
    wait_until(lambda: ipn_state(standin, "IPN-DROP") == "confirmed", what="confirmation")
    assert len(ipn_receiver.calls_for("IPN-DROP")) == 1
    outcomes = [a["outcome"] for a in standin.transaction("IPN-DROP")["ipn_attempts"]]
    assert outcomes[-1] == "confirmed"
    assert set(outcomes[:-1]) == {"dropped"}


def test_a_delayed_ipn_arrives_only_after_the_delay(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver
) -> None:
    standin.switches(ipn_delay_seconds=1.0)

    paid_at = time.monotonic()
    buyer.pay(payment_url(standin, "IPN-DELAY"))

    wait_until(lambda: len(ipn_receiver.calls_for("IPN-DELAY")) == 1, what="the delayed IPN")
    assert ipn_receiver.calls_for("IPN-DELAY")[0].received_at - paid_at >= 1.0


def test_a_manual_ipn_repeats_the_result_and_the_merchant_answers_02(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver
) -> None:
    buyer.pay(payment_url(standin, "IPN-AGAIN"))
    wait_until(lambda: ipn_state(standin, "IPN-AGAIN") == "confirmed", what="confirmation")

    attempt = standin.control("POST", "/transactions/IPN-AGAIN/ipn")

    assert attempt["manual"] is True
    assert attempt["rsp_code"] == "02"
    first, repeat = ipn_receiver.calls_for("IPN-AGAIN")
    assert sorted(first.parameters) == sorted(repeat.parameters)


def test_an_unfinished_payment_has_no_ipn_to_send(standin: Standin, buyer: Buyer) -> None:
    buyer.start(payment_url(standin, "IPN-OPEN"))

    response = buyer.client.post(f"{standin.base_url}/_sandbox/transactions/IPN-OPEN/ipn")

    assert response.status_code == 409
    assert standin.transaction("IPN-OPEN")["ipn"] == "not_sent"
