"""The VNPAY stand-in as a real process, a real IPN receiver, and a buyer's browser over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from eventhunting.payments.vnpay import (
    MerchantCredentials,
    PaymentRequest,
    PaymentResult,
    build_payment_url,
    verify_payment_callback,
)
from tests.support.servers import free_port, wait_for_port

CREDENTIALS = MerchantCredentials(
    tmn_code="EVHTEST1", hash_secret="STANDINSECRET0123456789ABCDEFGH"
)
IPN_TIMEOUT_SECONDS = 1.0
IPN_RETRY_SECONDS = 0.2
IPN_MAX_CALLS = 10
RETURN_URL = "https://merchant.example/api/v1/payments/vnpay/return"

SUCCESS_CARD = "9704198526191432198"
INSUFFICIENT_BALANCE_CARD = "9704195798459170488"
NOT_ACTIVATED_CARD = "9704192181368742"
LOCKED_CARD = "9704193370791314"
EXPIRED_CARD = "9704194841945513"
HOLDER = "NGUYEN VAN A"
ISSUE_DATE = "07/15"
OTP = "123456"


@dataclass
class IpnCall:
    parameters: list[tuple[str, str]]
    signature_valid: bool
    answered: str
    received_at: float


@dataclass
class IpnReceiver:
    """A merchant's IPN endpoint as VNPAY.md specifies it, with scripted answers for tests.

    Without a script it answers 97 to a bad signature, 02 to a repeat and 00 otherwise.
    Script entries: an RspCode to answer, "timeout" (answer too late) or "http500".
    """

    url: str
    script: list[str] = field(default_factory=list)
    calls: list[IpnCall] = field(default_factory=list)
    confirmed: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.script.clear()
            self.calls.clear()
            self.confirmed.clear()

    def calls_for(self, txn_ref: str) -> list[IpnCall]:
        with self.lock:
            return [c for c in self.calls if ("vnp_TxnRef", txn_ref) in c.parameters]

    def answer(self, query: str) -> tuple[int, str, float]:
        """(HTTP status, RspCode, seconds to wait before answering)."""
        parameters = parse_qsl(query, keep_blank_values=True)
        callback = verify_payment_callback(parameters, CREDENTIALS.hash_secret)
        with self.lock:
            scripted = self.script.pop(0) if self.script else None
            if scripted is not None:
                code = "00" if scripted in ("timeout", "http500") else scripted
            elif callback.result is None:
                code = "97"
            elif callback.result.txn_ref in self.confirmed:
                code = "02"
            else:
                code = "00"
                self.confirmed.add(callback.result.txn_ref)
            self.calls.append(
                IpnCall(parameters, callback.signature_valid, scripted or code, time.monotonic())
            )
        if scripted == "timeout":
            return 200, code, IPN_TIMEOUT_SECONDS * 2
        return (500 if scripted == "http500" else 200), code, 0.0


@contextmanager
def running_ipn_receiver() -> Iterator[IpnReceiver]:
    port = free_port()
    receiver = IpnReceiver(url=f"http://127.0.0.1:{port}/ipn")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/ipn":
                self.send_error(404)
                return
            status, code, delay = receiver.answer(parts.query)
            time.sleep(delay)
            body = json.dumps({"RspCode": code, "Message": "test receiver"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            """`/broken`: what a failing proxy in front of VNPAY's API might answer."""
            body = b"<html><body>502 Bad Gateway</body></html>"
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Standin:
    base_url: str
    process: subprocess.Popen[bytes]

    @property
    def pay_url(self) -> str:
        return f"{self.base_url}/paymentv2/vpcpay.html"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/merchant_webapi/api/transaction"

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}/_sandbox{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def switches(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control("PATCH", "/switches", changes)
        return result

    def transaction(self, txn_ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", f"/transactions/{txn_ref}")
        return result

    def ledger(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/ledger")
        return result


def standin_command(port: int, ipn_url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "eventhunting.cli", "standin", "vnpay",
        "--port", str(port),
        "--tmn-code", CREDENTIALS.tmn_code,
        "--hash-secret", CREDENTIALS.hash_secret,
        "--ipn-url", ipn_url,
        "--ipn-retry-seconds", str(IPN_RETRY_SECONDS),
        "--ipn-max-calls", str(IPN_MAX_CALLS),
        "--ipn-timeout-seconds", str(IPN_TIMEOUT_SECONDS),
        "--log-level", "warning",
        *extra,
    ]  # fmt: skip


@contextmanager
def running_standin(ipn_url: str, *extra: str, data_file: Path | None = None) -> Iterator[Standin]:
    """Start `eventhunting standin vnpay` as a separate process; stop it with SIGTERM."""
    port = free_port()
    arguments = list(extra)
    if data_file is not None:
        arguments += ["--data-file", str(data_file)]
    process = subprocess.Popen(
        standin_command(port, ipn_url, *arguments),
        stdout=subprocess.DEVNULL,
        stderr=None,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_port(port, process=process)
        yield Standin(base_url=f"http://127.0.0.1:{port}", process=process)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or 'a condition'}")


def payment_url(
    standin: Standin,
    txn_ref: str,
    *,
    amount: int = 250_000,
    created_at: datetime | None = None,
    expires_in: timedelta = timedelta(minutes=15),
    locale: str = "vn",
    credentials: MerchantCredentials = CREDENTIALS,
) -> str:
    created = created_at or datetime.now(UTC)
    return build_payment_url(
        PaymentRequest(
            amount=amount,
            txn_ref=txn_ref,
            order_info=f"Thanh toán đơn hàng {txn_ref}",
            return_url=RETURN_URL,
            ip_address="203.0.113.9",
            created_at=created,
            expires_at=created + expires_in,
            locale="en" if locale == "en" else "vn",
        ),
        credentials,
        standin.pay_url,
    )


ERROR_CODE = re.compile(r'id="error-code"[^>]*>([0-9]+)<')


def error_code_of(page: httpx.Response) -> str | None:
    found = ERROR_CODE.search(page.text)
    return found.group(1) if found else None


@dataclass
class Buyer:
    """A browser on the sandbox's pages: plain form posts, redirects read by hand."""

    standin: Standin
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def open(self, url: str) -> httpx.Response:
        return self.client.get(url)

    def start(self, url: str) -> str:
        """Open a pay URL; the payment page's path."""
        opened = self.open(url)
        assert opened.status_code == 303, opened.text
        location: str = opened.headers["location"]
        return location

    def page(self, path: str) -> httpx.Response:
        return self.client.get(f"{self.standin.base_url}{path}")

    def submit_card(
        self,
        path: str,
        card_number: str,
        *,
        holder: str = HOLDER,
        issue_date: str = ISSUE_DATE,
        bank_code: str = "NCB",
    ) -> httpx.Response:
        return self.client.post(
            f"{self.standin.base_url}{path}/card",
            data={
                "bank_code": bank_code,
                "card_number": card_number,
                "card_holder": holder,
                "issue_date": issue_date,
            },
        )

    def submit_otp(self, path: str, otp: str = OTP) -> httpx.Response:
        return self.client.post(f"{self.standin.base_url}{path}/otp", data={"otp": otp})

    def cancel(self, path: str) -> httpx.Response:
        return self.client.post(f"{self.standin.base_url}{path}/cancel")

    def pay(self, url: str, card_number: str = SUCCESS_CARD, otp: str = OTP) -> httpx.Response:
        """Go through the pages with a card; the final redirect (to the return URL)."""
        path = self.start(url)
        entered = self.submit_card(path, card_number)
        assert entered.status_code == 303, entered.text
        if entered.headers["location"] != path:
            return entered
        return self.submit_otp(path, otp)


def returned_parameters(redirect: httpx.Response) -> list[tuple[str, str]]:
    """The query VNPAY sends the browser back with (decoded as a merchant framework would)."""
    assert redirect.status_code == 303, redirect.text
    location = urlsplit(redirect.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == RETURN_URL
    return parse_qsl(location.query, keep_blank_values=True)


def returned_result(redirect: httpx.Response) -> PaymentResult:
    callback = verify_payment_callback(returned_parameters(redirect), CREDENTIALS.hash_secret)
    assert callback.signature_valid
    assert callback.result is not None
    return callback.result
