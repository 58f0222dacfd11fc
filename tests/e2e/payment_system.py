"""The API and workers as processes, wired to the VNPAY sandbox stand-in as to VNPAY."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.integration.vnpay.standin_harness import CREDENTIALS, Standin, running_standin
from tests.support.servers import free_port
from tests.support.system import RunningSystem, running_system

# Every worker the payment path needs: read models, archive, hold expiry, querydr/refunds.
PAYMENT_WORKERS = ("projector", "archiver", "expirer", "reconciler")
IPN_PATH = "/api/v1/payments/vnpay/ipn"
# The sandbox's IPN calls go to a real API on a shared machine: allow them time.
IPN_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class PaymentSystem:
    """The running API (and workers), the sandbox calling its IPN, and their MongoDB database."""

    api: RunningSystem
    standin: Standin
    database: str


@contextmanager
def running_payment_system(redis_url: str, mongodb_url: str) -> Iterator[PaymentSystem]:
    """The stand-in's IPN URL is the API's; the API's pay and querydr/refund URLs are the
    stand-in's; both share one merchant code and secret; the return URL is the API's."""
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    with (
        running_standin(
            api_url + IPN_PATH, "--ipn-timeout-seconds", str(IPN_TIMEOUT_SECONDS)
        ) as standin,
        running_system(
            redis_url,
            mongodb_url,
            database,
            workers=PAYMENT_WORKERS,
            port=api_port,
            overrides={
                "EVENTHUNTING_VNPAY_TMN_CODE": CREDENTIALS.tmn_code,
                "EVENTHUNTING_VNPAY_HASH_SECRET": CREDENTIALS.hash_secret,
                "EVENTHUNTING_VNPAY_PAY_URL": standin.pay_url,
                "EVENTHUNTING_VNPAY_API_URL": standin.api_url,
                "EVENTHUNTING_PUBLIC_BASE_URL": api_url,
            },
        ) as api,
    ):
        yield PaymentSystem(api=api, standin=standin, database=database)
