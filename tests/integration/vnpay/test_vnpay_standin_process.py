"""The VNPAY stand-in as a process: its data file across restarts and its command line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from eventhunting.payments.vnpay_api import QueryRequest, RefundRequest, VnpayGateway
from tests.integration.vnpay.standin_harness import (
    CREDENTIALS,
    Buyer,
    IpnReceiver,
    Standin,
    payment_url,
    returned_result,
    running_standin,
    stop,
    wait_until,
)
from tests.support.servers import free_port, wait_for_port


async def test_the_ledger_survives_a_restart_with_a_data_file(
    tmp_path: Path, ipn_receiver: IpnReceiver
) -> None:
    data_file = tmp_path / "vnpay-standin.json"
    created_at = datetime.now(UTC).replace(microsecond=0)
    with running_standin(ipn_receiver.url, data_file=data_file) as standin:
        buyer = Buyer(standin)
        result = returned_result(
            buyer.pay(payment_url(standin, "KEEP-1", amount=90_000, created_at=created_at))
        )
        buyer.client.close()
        async with VnpayGateway(CREDENTIALS, standin.api_url) as gateway:
            refund = await gateway.refund(
                RefundRequest(
                    request_id="KEEP-REFUND-1",
                    txn_ref="KEEP-1",
                    order_info="Hoan tien",
                    transaction_date=created_at,
                    created_at=datetime.now(UTC),
                    ip_address="10.0.0.1",
                    amount=30_000,
                    refund_type="partial",
                    created_by="admin",
                )
            )
        assert refund.response_code == "00"
        before = standin.ledger()

    with running_standin(ipn_receiver.url, data_file=data_file) as restarted:
        assert restarted.ledger() == before
        async with VnpayGateway(CREDENTIALS, restarted.api_url) as gateway:
            queried = await gateway.query(
                QueryRequest(
                    request_id="KEEP-QUERY-1",
                    txn_ref="KEEP-1",
                    order_info="Truy van",
                    transaction_date=created_at,
                    created_at=datetime.now(UTC),
                    ip_address="10.0.0.1",
                )
            )
            repeated = await gateway.refund(
                RefundRequest(
                    request_id="KEEP-REFUND-1",
                    txn_ref="KEEP-1",
                    order_info="Hoan tien",
                    transaction_date=created_at,
                    created_at=datetime.now(UTC),
                    ip_address="10.0.0.1",
                    amount=30_000,
                    refund_type="partial",
                    created_by="admin",
                )
            )
        assert queried.transaction_no == result.transaction_no
        assert queried.transaction_type == "03"
        assert repeated.response_code == "94"


def test_unconfirmed_ipns_are_called_again_after_a_restart(
    tmp_path: Path, ipn_receiver: IpnReceiver
) -> None:
    ipn_receiver.reset()
    data_file = tmp_path / "vnpay-standin.json"
    slow_retries = ("--ipn-retry-seconds", "3600")
    with running_standin(ipn_receiver.url, *slow_retries, data_file=data_file) as standin:
        ipn_receiver.script.append("99")
        buyer = Buyer(standin)
        buyer.pay(payment_url(standin, "KEEP-IPN"))
        buyer.client.close()
        wait_until(lambda: len(ipn_receiver.calls_for("KEEP-IPN")) == 1, what="the first IPN")
        stop(standin.process)

    with running_standin(ipn_receiver.url, data_file=data_file) as restarted:
        wait_until(
            lambda: restarted.transaction("KEEP-IPN")["ipn"] == "confirmed", what="confirmation"
        )
    assert [call.answered for call in ipn_receiver.calls_for("KEEP-IPN")] == ["99", "00"]


def test_a_corrupt_data_file_stops_the_standin_with_an_error(
    tmp_path: Path, ipn_receiver: IpnReceiver
) -> None:
    data_file = tmp_path / "vnpay-standin.json"
    data_file.write_text('{"format": "something else"}')

    completed = run_cli(
        "--tmn-code",
        CREDENTIALS.tmn_code,
        "--hash-secret",
        CREDENTIALS.hash_secret,
        "--ipn-url",
        ipn_receiver.url,
        "--data-file",
        str(data_file),
    )

    assert completed.returncode == 1
    assert "cannot load the data file" in completed.stderr
    assert data_file.read_text() == '{"format": "something else"}'


def environment_without_merchant() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("EVENTHUNTING_VNPAY_TMN_CODE", "EVENTHUNTING_VNPAY_HASH_SECRET")
    }


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventhunting.cli", "standin", "vnpay", "--port", "1", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment_without_merchant(),
    )


def test_the_command_line_refuses_a_malformed_merchant_code_or_ipn_url() -> None:
    bad_code = run_cli("--tmn-code", "SHORT", "--hash-secret", "s", "--ipn-url", "http://x/ipn")
    bad_url = run_cli(
        "--tmn-code", CREDENTIALS.tmn_code, "--hash-secret", "s", "--ipn-url", "ftp://x/ipn"
    )
    missing = run_cli("--tmn-code", CREDENTIALS.tmn_code)

    assert bad_code.returncode == 2
    assert "8 letters or digits" in bad_code.stderr
    assert bad_url.returncode == 2
    assert missing.returncode == 2
    assert "--hash-secret" in missing.stderr


def test_the_standin_answers_health_and_unknown_paths(ipn_receiver: IpnReceiver) -> None:
    with running_standin(ipn_receiver.url) as standin:
        assert httpx.get(f"{standin.base_url}/_sandbox/health").json() == {"status": "ok"}
        assert httpx.get(f"{standin.base_url}/nothing-here").status_code == 404
        bad_switch = httpx.patch(
            f"{standin.base_url}/_sandbox/switches", json={"refund_failure_rate": 2}
        )
        unknown_switch = httpx.patch(f"{standin.base_url}/_sandbox/switches", json={"nope": 1})
        assert bad_switch.status_code == 400
        assert unknown_switch.status_code == 400
        assert standin.control("GET", "/switches")["refund_failure_rate"] == 0.0


def test_the_merchant_credentials_can_come_from_the_environment(
    ipn_receiver: IpnReceiver,
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "eventhunting.cli", "standin", "vnpay"),
            *("--port", str(port), "--ipn-url", ipn_receiver.url, "--log-level", "warning"),
        ],
        env={
            **environment_without_merchant(),
            "EVENTHUNTING_VNPAY_TMN_CODE": CREDENTIALS.tmn_code,
            "EVENTHUNTING_VNPAY_HASH_SECRET": CREDENTIALS.hash_secret,
        },
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        standin = Standin(base_url=f"http://127.0.0.1:{port}", process=process)
        buyer = Buyer(standin)
        result = returned_result(buyer.pay(payment_url(standin, "ENV-1")))
        buyer.client.close()
    finally:
        stop(process)

    assert result.paid
