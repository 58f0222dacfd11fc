"""The running sandbox: its configuration, test switches, ledger and background IPN calls."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import httpx
import msgspec

from eventhunting.payments.vnpay import MerchantCredentials
from eventhunting.standins.vnpay.ledger import Ledger, write_atomically

log = logging.getLogger("eventhunting.standins.vnpay")

FLUSH_INTERVAL_SECONDS = 0.5


class SandboxConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Fixed at start-up from the command line."""

    credentials: MerchantCredentials
    ipn_url: str
    data_file: Path | None = None
    ipn_max_calls: int = 10
    ipn_retry_seconds: float = 300.0
    ipn_timeout_seconds: float = 10.0
    seed: int | None = None


class Switches(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Behaviour tests change at run time through `PATCH /_sandbox/switches`."""

    drop_ipns: bool = False
    ipn_delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    ipn_retry_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 300.0
    refund_failure_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    refund_failure_mode: Literal["error", "timeout", "applied_then_timeout"] = "error"
    refund_hang_seconds: Annotated[float, msgspec.Meta(ge=0, le=600)] = 30.0
    refund_rate_limit_per_second: Annotated[float, msgspec.Meta(gt=0)] | None = None
    refund_rate_limit_answer: Literal["code_99", "http_429"] = "code_99"
    full_refunds_allowed: bool = True
    seed: int | None = None


class Sandbox:
    """State shared by the pages, the merchant API, the control API and the IPN caller."""

    def __init__(self, config: SandboxConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger
        self.switches = self.default_switches()
        self.random = random.Random(config.seed)
        self.refund_calls: deque[float] = deque()
        self.ipn_tasks: dict[str, asyncio.Task[None]] = {}
        self._http: httpx.AsyncClient | None = None

    @property
    def credentials(self) -> MerchantCredentials:
        return self.config.credentials

    def default_switches(self) -> Switches:
        return Switches(ipn_retry_seconds=self.config.ipn_retry_seconds, seed=self.config.seed)

    def set_switches(self, switches: Switches) -> None:
        if switches.seed != self.switches.seed:
            self.random.seed(switches.seed)
        self.switches = switches

    def reset(self) -> None:
        """Forget every payment, refund and request id and restore the default switches."""
        for task in self.ipn_tasks.values():
            task.cancel()
        self.ipn_tasks.clear()
        self.ledger.clear()
        self.switches = self.default_switches()
        self.random.seed(self.config.seed)
        self.refund_calls.clear()

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.config.ipn_timeout_seconds)
        return self._http

    def refund_rate_exceeded(self) -> bool:
        """Count this refund call; True when it goes over the per-second limit."""
        limit = self.switches.refund_rate_limit_per_second
        now = time.monotonic()
        while self.refund_calls and now - self.refund_calls[0] >= 1.0:
            self.refund_calls.popleft()
        if limit is not None and len(self.refund_calls) >= limit:
            return True
        self.refund_calls.append(now)
        return False

    def refund_fails_now(self) -> bool:
        rate = self.switches.refund_failure_rate
        return rate > 0 and self.random.random() < rate

    async def stop(self) -> None:
        tasks = list(self.ipn_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        self.save()

    def save(self) -> None:
        if self.config.data_file is not None:
            write_atomically(self.config.data_file, self.ledger.encode())

    async def flush_forever(self) -> None:
        """Write the data file shortly after the ledger changes (atomically)."""
        saved = self.ledger.changes
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            if self.ledger.changes == saved:
                continue
            saved = self.ledger.changes
            path = self.config.data_file
            if path is None:
                continue
            try:
                await asyncio.to_thread(write_atomically, path, self.ledger.encode())
            except OSError:
                log.exception("saving the data file failed", extra={"data_file": str(path)})
