"""The OpenAPI document says what the server enforces and which errors it answers."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from eventhunting.api.app import create_app
from eventhunting.api.parameters import MAX_PAGE, MAX_PAGE_SIZE
from eventhunting.domain import catalog
from eventhunting.domain.accounts import ASSIGNABLE_ROLES
from eventhunting.settings import load_settings

METHODS = ("get", "post", "put", "patch", "delete")
PROBLEM_REF = "#/components/schemas/Problem"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = load_settings(
        {
            "EVENTHUNTING_REDIS_URL": "redis://127.0.0.1:6379/0",
            "EVENTHUNTING_MONGODB_URL": "mongodb://127.0.0.1:27017/eventhunting",
            "EVENTHUNTING_JWT_SECRET": "only-builds-the-document-" + "x" * 32,
        },
        dotenv=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        built: dict[str, Any] = create_app(settings).openapi_schema.to_schema()
    return built


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": item[method]
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item
    }


def schema_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def test_no_operation_declares_a_400(document: dict[str, Any]) -> None:
    assert [name for name, op in operations(document).items() if "400" in op["responses"]] == []


def test_every_error_response_is_a_problem(document: dict[str, Any]) -> None:
    wrong = []
    for name, operation in operations(document).items():
        for status, response in operation["responses"].items():
            if status.startswith("2") or status == "503":
                continue
            content = response.get("content", {})
            schema = content.get("application/problem+json", {}).get("schema", {})
            refs = [schema.get("$ref")] + [part.get("$ref") for part in schema.get("allOf", [])]
            if list(content) != ["application/problem+json"] or PROBLEM_REF not in refs:
                wrong.append(f"{name} {status}")
    assert wrong == []


def test_error_statuses_follow_from_guards_paths_and_input(document: dict[str, Any]) -> None:
    declared = {name: sorted(op["responses"]) for name, op in operations(document).items()}
    assert declared["GET /api/v1/events"] == ["200", "422", "500"]
    assert declared["GET /api/v1/events/{event_id}"] == ["200", "401", "404", "500"]
    assert declared["POST /api/v1/events"] == ["201", "401", "403", "409", "422", "500"]
    assert declared["POST /api/v1/auth/login"] == ["200", "401", "422", "429", "500"]
    assert declared["POST /api/v1/orders"] == ["201", "401", "404", "409", "422", "500"]
    assert declared["POST /api/v1/orders/{order_id}/cancel"] == [
        "200",
        "401",
        "403",
        "404",
        "409",
        "500",
    ]
    assert declared["GET /health/ready"] == ["200", "500", "503"]


def test_invalid_input_answers_name_their_fields(document: dict[str, Any]) -> None:
    response = operations(document)["POST /api/v1/events"]["responses"]["422"]
    schema = response["content"]["application/problem+json"]["schema"]
    assert {"required": ["errors"]} in schema["allOf"]
    problem = schema_of(document, "Problem")
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}


def test_throttling_and_authentication_answers_declare_their_headers(
    document: dict[str, Any],
) -> None:
    login = operations(document)["POST /api/v1/auth/login"]["responses"]
    assert login["429"]["headers"]["Retry-After"]["required"] is True
    assert login["401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_every_page_and_page_size_has_the_same_bounds(document: dict[str, Any]) -> None:
    bounds = {
        (name, parameter["name"]): (
            parameter["schema"]["minimum"],
            parameter["schema"]["maximum"],
        )
        for name, operation in operations(document).items()
        for parameter in operation.get("parameters", [])
        if parameter["name"] in ("page", "page_size")
    }
    assert {key[0] for key in bounds} == {
        "GET /api/v1/events",
        "GET /api/v1/me/events",
        "GET /api/v1/orders",
        "GET /api/v1/admin/accounts",
        "GET /api/v1/admin/dead-letters",
        "GET /api/v1/admin/refunds",
    }
    assert set(bounds.values()) == {(1, MAX_PAGE), (1, MAX_PAGE_SIZE)}


def test_bodies_that_refuse_unknown_fields_say_so(document: dict[str, Any]) -> None:
    closed = {
        name
        for name, schema in document["components"]["schemas"].items()
        if schema.get("additionalProperties") is False
    }
    assert {
        "EventCreate",
        "EventUpdate",
        "EventCancel",
        "VenueCreate",
        "TicketTypeCreate",
        "TicketTypeUpdate",
        "OrderCreate",
        "OrderItemCreate",
    } <= closed
    assert "AccountCreate" not in closed  # account bodies ignore unknown fields


def test_request_schemas_carry_the_bounds_the_server_checks(document: dict[str, Any]) -> None:
    price = schema_of(document, "TicketTypeUpdate")["properties"]["price"]
    assert (price["minimum"], price["maximum"]) == (0, catalog.MAX_PRICE)
    topics = schema_of(document, "EventCreate")["properties"]["topics"]
    assert topics["items"]["maxLength"] == catalog.MAX_TOPIC_LENGTH
    register = schema_of(document, "AccountCreate")["properties"]
    assert (register["password"]["minLength"], register["password"]["maxLength"]) == (8, 128)
    assert register["full_name"]["minLength"] == 1
    roles = schema_of(document, "AccountRolesUpdate")["properties"]["roles"]["items"]
    assert sorted(roles["enum"]) == sorted(ASSIGNABLE_ROLES)


def test_cancelling_an_event_needs_no_body(document: dict[str, Any]) -> None:
    cancel = operations(document)["POST /api/v1/events/{event_id}/cancel"]
    assert cancel["requestBody"]["required"] is False


def test_time_query_parameters_are_date_times_and_never_null(document: dict[str, Any]) -> None:
    parameters = {
        parameter["name"]: parameter["schema"]
        for parameter in operations(document)["GET /api/v1/events"]["parameters"]
    }
    assert parameters["starts_after"]["type"] == "string"
    assert parameters["starts_after"]["format"] == "date-time"
    assert "oneOf" not in parameters["q"]
