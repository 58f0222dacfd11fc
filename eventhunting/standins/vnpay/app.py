"""The sandbox's Litestar application: pay pages, merchant API and control API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from eventhunting.standins.vnpay.control import SandboxControl
from eventhunting.standins.vnpay.ipn import resume_ipn_deliveries
from eventhunting.standins.vnpay.merchant_api import merchant_transaction_api
from eventhunting.standins.vnpay.pay_pages import PaymentPages
from eventhunting.standins.vnpay.sandbox import Sandbox

TEMPLATES = Path(__file__).parent / "templates"


def create_sandbox_app(sandbox: Sandbox) -> Litestar:
    """The app serving one sandbox; IPN calls and the data file run with its lifespan."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        resume_ipn_deliveries(sandbox)
        flusher = asyncio.create_task(sandbox.flush_forever(), name="vnpay-standin:flush")
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await sandbox.stop()

    app = Litestar(
        route_handlers=[PaymentPages, merchant_transaction_api, SandboxControl],
        lifespan=[lifespan],
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        openapi_config=None,
    )
    app.state.sandbox = sandbox
    return app
