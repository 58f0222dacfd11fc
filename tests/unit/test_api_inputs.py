"""JSON bodies are decoded strictly and query date-times are RFC 3339 with an offset."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import pytest
from litestar import Litestar, post
from litestar.testing import TestClient

from eventhunting.api.bodies import StrictJSONBody
from eventhunting.api.errors import EXCEPTION_HANDLERS
from eventhunting.api.parameters import instant_of
from eventhunting.domain.errors import InvalidInput


class Line(msgspec.Struct, forbid_unknown_fields=True):
    quantity: int
    at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class Note(msgspec.Struct, forbid_unknown_fields=True):
    reason: str | None = None


@post("/lines")
async def add_line(data: Line) -> dict[str, Any]:
    return {"quantity": data.quantity, "at": data.at}


@post("/notes")
async def add_note(data: Note | None = None) -> dict[str, Any]:
    return {"reason": None if data is None else data.reason}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    app = Litestar(
        [add_line, add_note],
        dto=StrictJSONBody,
        return_dto=None,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    with TestClient(app) as client:
        yield client


def post_json(client: TestClient[Litestar], path: str, body: bytes) -> Any:
    return client.post(path, content=body, headers={"content-type": "application/json"})


def errors_of(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_input"
    errors: list[dict[str, str]] = response.json()["errors"]
    return errors


def test_a_body_of_the_right_types_is_taken(client: TestClient[Litestar]) -> None:
    response = post_json(client, "/lines", b'{"quantity": 2, "at": "2026-05-01T19:00:00+07:00"}')
    assert response.status_code == 201
    assert response.json() == {"quantity": 2, "at": "2026-05-01T19:00:00+07:00"}


def test_a_numeric_string_is_not_an_integer(client: TestClient[Litestar]) -> None:
    errors = errors_of(post_json(client, "/lines", b'{"quantity": "2"}'))
    assert errors == [{"field": "quantity", "message": "Expected `int`, got `str`"}]


def test_an_integer_may_be_written_with_a_zero_fraction(client: TestClient[Litestar]) -> None:
    response = post_json(client, "/lines", b'{"quantity": 2.0}')
    assert response.status_code == 201
    assert response.json()["quantity"] == 2
    assert errors_of(post_json(client, "/lines", b'{"quantity": 2.5}'))[0]["field"] == "quantity"


@pytest.mark.parametrize(
    "at", [b"1777636800", b'"1777636800"', b'"2026-05-01T19:00:00"', b'"2026-05-01"']
)
def test_a_date_time_is_rfc_3339_with_an_offset(client: TestClient[Litestar], at: bytes) -> None:
    errors = errors_of(post_json(client, "/lines", b'{"quantity": 1, "at": ' + at + b"}"))
    assert [error["field"] for error in errors] == ["at"]


def test_an_unknown_field_is_named(client: TestClient[Litestar]) -> None:
    errors = errors_of(post_json(client, "/lines", b'{"quantity": 1, "colour": "red"}'))
    assert errors == [{"field": "colour", "message": "unknown field; this body does not take it"}]


def test_a_missing_field_is_named(client: TestClient[Litestar]) -> None:
    errors = errors_of(post_json(client, "/lines", b"{}"))
    assert errors == [{"field": "quantity", "message": "this field is required"}]


def test_a_required_body_that_is_missing_is_invalid_input(client: TestClient[Litestar]) -> None:
    errors = errors_of(post_json(client, "/lines", b""))
    assert errors == [{"field": "", "message": "a JSON body is required"}]


@pytest.mark.parametrize("body", [b"{not json", b'5\xff"', b'"x" trailing'])
def test_a_body_that_is_not_json_is_invalid_input_not_an_error(
    client: TestClient[Litestar], body: bytes
) -> None:
    errors = errors_of(post_json(client, "/lines", body))
    assert errors[0]["field"] == ""


@pytest.mark.parametrize("body", [b"", b"null", b"{}"])
def test_an_optional_body_may_be_left_out(client: TestClient[Litestar], body: bytes) -> None:
    response = post_json(client, "/notes", body)
    assert response.status_code == 201
    assert response.json() == {"reason": None}


def test_a_query_instant_with_an_offset_is_read() -> None:
    assert instant_of("2026-05-01T19:00:00+07:00", "starts_after") == datetime(
        2026, 5, 1, 12, tzinfo=UTC
    )
    assert instant_of(None, "starts_after") is None


@pytest.mark.parametrize("text", ["1777636800", "2026-05-01T19:00:00", "2026-05-01", "soon"])
def test_a_query_instant_without_an_offset_or_as_a_number_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        instant_of(text, "starts_after")
    assert refused.value.extra["errors"][0]["field"] == "starts_after"
