"""Command line: `eventhunting standin vnpay --port N --tmn-code X --hash-secret Y --ipn-url U`."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

from eventhunting.payments.vnpay import MerchantCredentials
from eventhunting.standins.vnpay.ledger import Ledger
from eventhunting.standins.vnpay.sandbox import Sandbox, SandboxConfig
from eventhunting.structured_logging import configure_logging

log = logging.getLogger("eventhunting.standins.vnpay")

# The merchant's own settings, so `eventhunting dev` need not put the secret on a command line.
TMN_CODE_VARIABLE = "EVENTHUNTING_VNPAY_TMN_CODE"
HASH_SECRET_VARIABLE = "EVENTHUNTING_VNPAY_HASH_SECRET"  # noqa: S105 - a variable name


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="eventhunting standin vnpay",
        description="VNPAY sandbox stand-in for development and tests only"
        " (docs/vnpay-sandbox.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on")
    parser.add_argument(
        "--tmn-code",
        default=os.environ.get(TMN_CODE_VARIABLE),
        help=f"the merchant's vnp_TmnCode (default: ${TMN_CODE_VARIABLE})",
    )
    parser.add_argument(
        "--hash-secret",
        default=os.environ.get(HASH_SECRET_VARIABLE),
        help=f"the merchant's hash secret (default: ${HASH_SECRET_VARIABLE}, kept out of ps)",
    )
    parser.add_argument("--ipn-url", required=True, help="the merchant's IPN URL (GET)")
    parser.add_argument("--data-file", type=Path, default=None, help="keep the ledger in this file")
    parser.add_argument(
        "--ipn-retry-seconds",
        type=float,
        default=300.0,
        help="wait between IPN calls until the merchant confirms (default 300)",
    )
    parser.add_argument(
        "--ipn-max-calls", type=int, default=10, help="IPN calls per payment at most (default 10)"
    )
    parser.add_argument(
        "--ipn-timeout-seconds",
        type=float,
        default=10.0,
        help="how long one IPN call may take (default 10)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the fault-injection random numbers"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    arguments = parser.parse_args(argv)
    if not arguments.tmn_code or not arguments.hash_secret:
        parser.error(
            f"--tmn-code and --hash-secret are required (or {TMN_CODE_VARIABLE}"
            f" and {HASH_SECRET_VARIABLE})"
        )
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    configure_logging(arguments.log_level.upper())
    try:
        credentials = MerchantCredentials(
            tmn_code=arguments.tmn_code, hash_secret=arguments.hash_secret
        )
    except ValueError as error:
        log.error("invalid merchant credentials", extra={"error": str(error)})
        return 2
    if urlsplit(arguments.ipn_url).scheme not in ("http", "https"):
        log.error("the IPN URL must be an http or https URL", extra={"ipn_url": arguments.ipn_url})
        return 2
    if arguments.ipn_max_calls < 1 or arguments.ipn_retry_seconds < 0:
        log.error("--ipn-max-calls must be at least 1 and --ipn-retry-seconds not negative")
        return 2
    config = SandboxConfig(
        credentials=credentials,
        ipn_url=arguments.ipn_url,
        data_file=arguments.data_file,
        ipn_max_calls=arguments.ipn_max_calls,
        ipn_retry_seconds=arguments.ipn_retry_seconds,
        ipn_timeout_seconds=arguments.ipn_timeout_seconds,
        seed=arguments.seed,
    )
    ledger = Ledger()
    data_file: Path | None = arguments.data_file
    if data_file is not None and data_file.exists():
        try:
            ledger.load(data_file)
        except (OSError, ValueError) as error:
            log.error(
                "cannot load the data file",
                extra={"data_file": str(data_file), "error": str(error)},
            )
            return 1
    import uvicorn

    from eventhunting.standins.vnpay.app import create_sandbox_app

    app = create_sandbox_app(Sandbox(config, ledger))
    log.info(
        "vnpay stand-in listening",
        extra={
            "url": f"http://{arguments.host}:{arguments.port}",
            "tmn_code": credentials.tmn_code,
            "ipn_url": arguments.ipn_url,
            "data_file": str(data_file) if data_file else None,
            "transactions_loaded": len(ledger.transactions),
        },
    )
    uvicorn.run(
        app,
        host=arguments.host,
        port=arguments.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0
