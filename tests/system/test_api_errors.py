"""Every error leaves the API as problem+json with a stable code, and reveals no internals."""

from __future__ import annotations

import httpx

from tests.support.servers import free_port
from tests.support.system import running_system

PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= set(body)
    assert "Traceback" not in response.text
    return body


async def test_a_body_that_is_not_json_answers_422_invalid_input(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/v1/auth/register", content=b"{not json", headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 422, "invalid_input")
    assert isinstance(body["errors"], list)
    assert body["errors"][0]["field"] == ""


async def test_a_wrongly_typed_field_is_named_in_errors(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/v1/auth/register", json={"email": 5, "password": "long enough", "full_name": "A"}
    )
    body = assert_problem(response, 422, "invalid_input")
    assert body["errors"] == [{"field": "email", "message": "Expected `str`, got `int`"}]


async def test_an_unknown_route_answers_404_problem(http: httpx.AsyncClient) -> None:
    assert_problem(await http.get("/api/v1/no-such-thing"), 404, "not_found")


async def test_a_wrong_method_answers_405_problem(http: httpx.AsyncClient) -> None:
    assert_problem(await http.delete("/api/v1/events"), 405, "method_not_allowed")


async def test_options_lists_every_method_of_the_path(http: httpx.AsyncClient) -> None:
    response = await http.options("/api/v1/events")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, OPTIONS, POST"


async def test_every_response_carries_a_request_id(http: httpx.AsyncClient) -> None:
    chosen = await http.get("/health/live", headers={"X-Request-ID": "trace-me-123"})
    assert chosen.headers["x-request-id"] == "trace-me-123"
    generated = await http.get("/health/live")
    assert len(generated.headers["x-request-id"]) >= 16


async def test_ready_answers_200_when_redis_and_mongodb_answer(http: httpx.AsyncClient) -> None:
    response = await http.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"redis": "ok", "mongodb": "ok"}}


async def test_metrics_are_prometheus_text(http: httpx.AsyncClient) -> None:
    await http.get("/health/live")
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "eventhunting_http_requests_total" in response.text


def test_ready_answers_503_while_mongodb_is_unreachable_and_live_stays_200(
    redis_url: str,
) -> None:
    unreachable = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    with running_system(redis_url, unreachable, "unreachable") as system:
        ready = httpx.get(f"{system.base_url}/health/ready", timeout=30)
        live = httpx.get(f"{system.base_url}/health/live", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"redis": "ok", "mongodb": "unavailable"}
    assert live.status_code == 200
