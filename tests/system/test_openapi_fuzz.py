"""Schemathesis fuzzes every operation of the running API, as anonymous, customer, organizer
and admin.

The OpenAPI document must say what the API does: every status and body it answers is
declared (errors as problem+json), every request the document calls invalid is refused,
and no input makes it fail (500). All of Schemathesis' checks run; the few places where a
check expects something this API rightly does otherwise are configured in FUZZ_CONFIG below,
each with its reason.

The system runs on a Redis of its own: fuzzing sign-in fails many logins from 127.0.0.1,
which would throttle every later test's sign-in on the shared system.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from eventhunting.api.app import create_app
from eventhunting.settings import load_settings
from tests.conftest import SYSTEM_WORKERS
from tests.support.accounts import SignedIn, sign_in_admin, sign_up
from tests.support.catalog import event_body
from tests.support.servers import running_redis
from tests.support.system import RunningSystem, running_system

pytestmark = pytest.mark.system

EXAMPLES_PER_OPERATION = 25

# Schema-valid input that the domain still refuses with 422, by rules a JSON Schema cannot
# state: a province of Vietnam by name or slug (case and diacritics ignored), a topic with
# letters, an event starting in the future and lasting at most a year, sales ending by the
# event's end and starting before they end, starts_before after starts_after, an email shape
# checked after trimming and Unicode normalisation, a password that is not the email. Only
# these operations may answer 422 to data the document calls valid.
DOMAIN_RULES_BEYOND_THE_SCHEMA: tuple[tuple[str, str], ...] = (
    ("POST", "/api/v1/auth/register"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/events"),
    ("PATCH", "/api/v1/events/{event_id}"),
    ("POST", "/api/v1/events/{event_id}/ticket-types"),
    ("PATCH", "/api/v1/events/{event_id}/ticket-types/{ticket_type_id}"),
)
POSITIVE_STATUSES = ["2xx", "401", "403", "404", "409", "429"]

FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {
            "max-examples": EXAMPLES_PER_OPERATION,
            "deterministic": True,
            "database": "none",
            # Each test signs its caller in itself; requests without a token or with a wrong
            # one are what the ignored_auth check sends for every guarded operation.
            "with-security-parameters": False,
            # Unknown query parameters and headers are ignored, as HTTP APIs do (a client's
            # cache-buster must not break a list), so they are not invalid input here.
            "allow-extra-parameters": False,
        },
        "checks": {"enabled": True},
        "operations": [
            {
                "include-method": method,
                "include-path": path,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": [*POSITIVE_STATUSES, "422"],
                    }
                },
            }
            for method, path in DOMAIN_RULES_BEYOND_THE_SCHEMA
        ],
    }
)

# Schemathesis makes one test per operation when it has the document at collection time (its
# fixture-based loading does not run on this pytest), so the document is built from the app
# here, the way `GET /schema/openapi.json` builds it; the test below checks the running API
# serves exactly this document.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # Litestar 3's, about handler styles
    DOCUMENT: dict[str, Any] = create_app(
        load_settings(
            {
                "EVENTHUNTING_REDIS_URL": "redis://127.0.0.1:6379/0",
                "EVENTHUNTING_MONGODB_URL": "mongodb://127.0.0.1:27017/eventhunting",
                "EVENTHUNTING_JWT_SECRET": "only-builds-the-document-" + "x" * 32,
            },
            dotenv=None,
        )
    ).openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=FUZZ_CONFIG)


class RealResources:
    """Ids of things that exist, for the path parameters of a signed-in caller's cases.

    Generated ids only ever reach 404, which would leave what lies behind them unfuzzed;
    so each (caller, operation) gets its own published event of the organizer with a ticket
    type, an order of the customer on it and the customer's account id. Commands change them
    as they go (a cancelled event answers 409 from then on), which the document declares too.
    """

    def __init__(self, base_url: str, customer: SignedIn, organizer: SignedIn) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.customer = customer
        self.organizer = organizer
        self.made: dict[tuple[str, str], dict[str, str]] = {}

    def ids_for(self, caller: str, operation: str) -> dict[str, str]:
        key = (caller, operation)
        if key not in self.made:
            self.made[key] = self.make()
        return self.made[key]

    def make(self) -> dict[str, str]:
        event = self.expect(
            self.http.post("/api/v1/events", json=event_body(), headers=self.organizer.headers),
            201,
        )
        self.expect(
            self.http.post(f"/api/v1/events/{event['id']}/publish", headers=self.organizer.headers),
            200,
        )
        ticket_type_id = event["ticket_types"][0]["id"]
        order = self.expect(
            self.http.post(
                "/api/v1/orders",
                json={
                    "event_id": event["id"],
                    "items": [{"ticket_type_id": ticket_type_id, "quantity": 1}],
                },
                headers=self.customer.headers,
            ),
            201,
        )
        return {
            "event_id": event["id"],
            "ticket_type_id": ticket_type_id,
            "order_id": order["id"],
            "account_id": self.customer.account_id,
        }

    @staticmethod
    def expect(response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body


@dataclass
class FuzzTarget:
    system: RunningSystem
    callers: dict[str, SignedIn]
    resources: RealResources


@pytest.fixture(scope="module")
async def target(
    tmp_path_factory: pytest.TempPathFactory, mongodb_url: str
) -> AsyncIterator[FuzzTarget]:
    """The system, with a customer, an organizer and the bootstrap admin signed in over HTTP
    before any fuzzing (fuzzed sign-ins soon throttle every login from this address)."""
    with (
        running_redis(tmp_path_factory.mktemp("fuzz-redis")) as redis_url,
        running_system(
            redis_url, mongodb_url, f"fuzz_{uuid.uuid4().hex[:8]}", workers=SYSTEM_WORKERS
        ) as system,
    ):
        async with httpx.AsyncClient(base_url=system.base_url, timeout=30) as http:
            customer = await sign_up(http, system)
            organizer = await sign_up(http, system, roles=["organizer"])
            admin = await sign_in_admin(http, system)
        resources = RealResources(system.base_url, customer, organizer)
        try:
            yield FuzzTarget(
                system=system,
                callers={"customer": customer, "organizer": organizer, "admin": admin},
                resources=resources,
            )
        finally:
            resources.http.close()


def test_the_fuzzed_document_is_the_one_the_running_api_serves(target: FuzzTarget) -> None:
    response = httpx.get(f"{target.system.base_url}/schema/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.json() == DOCUMENT


def fuzz(case: Case, target: FuzzTarget, caller: str | None) -> None:
    """Send `case` as `caller` (None: anonymous) and run every check on the answer; a
    signed-in caller's positive case names things that exist in its path."""
    headers: dict[str, str] = {}
    if caller is not None:
        headers = target.callers[caller].headers
        if case.path_parameters and (case.meta is None or case.meta.generation.mode.is_positive):
            real = target.resources.ids_for(caller, case.operation.label)
            for name in case.path_parameters:
                if name in real:
                    case.path_parameters[name] = real[name]
    case.call_and_validate(base_url=target.system.base_url, headers=headers)


@schema.parametrize()
def test_every_operation_answers_an_anonymous_caller_as_the_document_says(
    case: Case, target: FuzzTarget
) -> None:
    fuzz(case, target, None)


@schema.parametrize()
def test_every_operation_answers_a_customer_as_the_document_says(
    case: Case, target: FuzzTarget
) -> None:
    fuzz(case, target, "customer")


@schema.parametrize()
def test_every_operation_answers_an_organizer_as_the_document_says(
    case: Case, target: FuzzTarget
) -> None:
    fuzz(case, target, "organizer")


# Last, because an admin's commands may change the customer's account (its roles, disabled),
# which the callers above rely on.
@schema.parametrize()
def test_every_operation_answers_an_admin_as_the_document_says(
    case: Case, target: FuzzTarget
) -> None:
    fuzz(case, target, "admin")
