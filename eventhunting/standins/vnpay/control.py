"""`/_sandbox/...`: the JSON API tests use to steer the sandbox and read its ledger."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import State

from eventhunting.standins.vnpay.ipn import call_ipn
from eventhunting.standins.vnpay.ledger import IpnAttempt, Refund, Transaction
from eventhunting.standins.vnpay.sandbox import Sandbox, Switches


class LedgerView(msgspec.Struct, frozen=True, kw_only=True):
    transactions: list[Transaction]
    refunds: list[Refund]


def problem(status_code: int, detail: str) -> Response[dict[str, Any]]:
    return Response({"detail": detail}, status_code=status_code)


class SandboxControl(Controller):
    """Switches, the ledger, manual IPN calls and a reset; no authentication (local tests)."""

    path = "/_sandbox"
    include_in_schema = False

    @get("/health", sync_to_thread=False)
    def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ledger", sync_to_thread=False)
    def ledger(self, state: State) -> LedgerView:
        sandbox: Sandbox = state.sandbox
        return LedgerView(
            transactions=list(sandbox.ledger.transactions.values()),
            refunds=list(sandbox.ledger.refunds),
        )

    @get("/transactions/{txn_ref:str}", sync_to_thread=False)
    def transaction(self, txn_ref: str, state: State) -> Transaction | Response[dict[str, Any]]:
        sandbox: Sandbox = state.sandbox
        found = sandbox.ledger.transactions.get(txn_ref)
        return found if found is not None else problem(404, "no such transaction")

    @post("/transactions/{txn_ref:str}/ipn", status_code=200)
    async def send_ipn(self, txn_ref: str, state: State) -> IpnAttempt | Response[dict[str, Any]]:
        """One more IPN call now, whatever happened before (drop_ipns does not apply)."""
        sandbox: Sandbox = state.sandbox
        found = sandbox.ledger.transactions.get(txn_ref)
        if found is None:
            return problem(404, "no such transaction")
        if found.step != "finished":
            return problem(409, "the payment is not finished")
        return await call_ipn(sandbox, found, manual=True)

    @get("/switches", sync_to_thread=False)
    def switches(self, state: State) -> Switches:
        sandbox: Sandbox = state.sandbox
        return sandbox.switches

    @patch("/switches")
    async def change_switches(
        self, request: Request[object, object, State], state: State
    ) -> Switches | Response[dict[str, Any]]:
        """Change the given switches only; unknown names or bad values are 400."""
        sandbox: Sandbox = state.sandbox
        try:
            changes = msgspec.json.decode(await request.body())
            if not isinstance(changes, dict):
                return problem(400, "send a JSON object of switches")
            switches = msgspec.convert(
                {**msgspec.structs.asdict(sandbox.switches), **changes}, Switches
            )
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            return problem(400, str(error))
        sandbox.set_switches(switches)
        return switches

    @post("/reset", status_code=200, sync_to_thread=False)
    def reset(self, state: State) -> dict[str, str]:
        """Forget everything and restore the default switches."""
        sandbox: Sandbox = state.sandbox
        sandbox.reset()
        return {"status": "reset"}
