"""The account routes of API.md through the running API: bodies, status codes, error codes."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from eventhunting.tokens.access import AccessTokens, key_id_of
from tests.support.accounts import (
    DEFAULT_PASSWORD,
    SignedIn,
    auth_headers,
    register,
    sign_in_admin,
    sign_up,
    unique_email,
)
from tests.support.system import RunningSystem

PROBLEM_JSON = "application/problem+json"


def client_address() -> dict[str, str]:
    """A client address of its own (uvicorn trusts X-Forwarded-For from localhost), so
    failed logins of one test never throttle another."""
    return {"X-Forwarded-For": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


async def login_response(
    http: httpx.AsyncClient, email: str, password: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await http.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        headers=headers or client_address(),
    )


# --- register ---------------------------------------------------------------------------


async def test_register_answers_201_with_the_account(http: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await http.post(
        "/api/v1/auth/register",
        json={"email": email.upper(), "password": DEFAULT_PASSWORD, "full_name": " Ana  Lê "},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == email
    assert body["full_name"] == "Ana Lê"
    assert body["roles"] == ["customer"]
    assert isinstance(body["id"], str)
    assert body["id"]
    assert "password" not in response.text
    assert "argon2" not in response.text


async def test_register_with_a_taken_email_answers_409_email_taken(
    http: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await register(http, email=email)
    response = await http.post(
        "/api/v1/auth/register",
        json={"email": f"  {email.upper()}", "password": DEFAULT_PASSWORD, "full_name": "B"},
    )
    assert_problem(response, 409, "email_taken")


async def test_concurrent_registrations_of_one_email_give_one_201(
    http: httpx.AsyncClient,
) -> None:
    email = unique_email()
    responses = await asyncio.gather(
        *(
            http.post(
                "/api/v1/auth/register",
                json={"email": email, "password": DEFAULT_PASSWORD, "full_name": f"R{index}"},
            )
            for index in range(10)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    unexpected = [r.text for r in responses if r.status_code not in (201, 409)]
    assert statuses == [201] + [409] * 9, unexpected
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "email_taken"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": DEFAULT_PASSWORD, "full_name": "A"}, "email"),
        ({"email": "EMAIL", "password": "short", "full_name": "A"}, "password"),
        ({"email": "EMAIL", "password": "p" * 129, "full_name": "A"}, "password"),
        ({"email": "EMAIL", "password": "EMAIL", "full_name": "A"}, "password"),
        ({"email": "EMAIL", "password": DEFAULT_PASSWORD, "full_name": "   "}, "full_name"),
        ({"email": "EMAIL", "password": DEFAULT_PASSWORD}, "full_name"),
        ({"email": "EMAIL", "password": 12345678, "full_name": "A"}, "password"),
    ],
)
async def test_register_with_invalid_input_answers_422_naming_the_field(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    email = unique_email()
    body = {key: email if value == "EMAIL" else value for key, value in body.items()}
    response = await http.post("/api/v1/auth/register", json=body)
    problem = assert_problem(response, 422, "invalid_input")
    assert field in [error["field"] for error in problem["errors"]]
    # Nothing was created: the email is still free.
    if field != "email":
        await register(http, email=email)


async def test_register_with_an_idempotency_key_answers_the_first_result_again(
    http: httpx.AsyncClient,
) -> None:
    body = {"email": unique_email(), "password": DEFAULT_PASSWORD, "full_name": "Idem"}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = await http.post("/api/v1/auth/register", json=body, headers=headers)
    again = await http.post("/api/v1/auth/register", json=body, headers=headers)
    assert first.status_code == 201
    assert again.status_code == 201
    assert again.json() == first.json()


@pytest.mark.parametrize("changed", ["password", "email"])
async def test_register_with_a_reused_idempotency_key_and_another_body_answers_409(
    http: httpx.AsyncClient, changed: str
) -> None:
    body = {"email": unique_email(), "password": DEFAULT_PASSWORD, "full_name": "Idem"}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = await http.post("/api/v1/auth/register", json=body, headers=headers)
    assert first.status_code == 201, first.text
    other = {
        **body,
        changed: {"password": "another fine password", "email": unique_email()}[changed],
    }
    again = await http.post("/api/v1/auth/register", json=other, headers=headers)
    assert_problem(again, 409, "idempotency_key_reused")
    assert first.json()["id"] not in again.text
    if changed == "email":
        # Nothing was created for the other email.
        await register(http, email=other["email"])


# --- login ------------------------------------------------------------------------------


async def test_login_answers_200_with_a_bearer_token_pair(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(http, email=email)
    response = await login_response(http, email, DEFAULT_PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    me = await http.get("/api/v1/me", headers=auth_headers(body["access_token"]))
    assert me.json()["email"] == email


async def test_wrong_password_and_unknown_email_answer_the_same_401(
    http: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await register(http, email=email)
    wrong = await login_response(http, email, "not the password")
    unknown = await login_response(http, unique_email(), "not the password")
    assert assert_problem(wrong, 401, "invalid_credentials") == assert_problem(
        unknown, 401, "invalid_credentials"
    )


async def test_repeated_failed_logins_for_one_account_from_one_address_answer_429(
    http: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await register(http, email=email)
    address = client_address()
    for _ in range(5):
        assert (await login_response(http, email, "wrong password", address)).status_code == 401
    # Even the right password from that address waits out the window...
    response = await login_response(http, email, DEFAULT_PASSWORD, address)
    assert_problem(response, 429, "too_many_attempts")
    assert 0 < int(response.headers["Retry-After"]) <= 900
    # ...while the owner elsewhere is not locked out by those failures.
    assert (await login_response(http, email, DEFAULT_PASSWORD)).status_code == 200


async def test_concurrent_wrong_guesses_answer_401_at_most_the_limit(
    http: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await register(http, email=email)
    address = client_address()
    responses = await asyncio.gather(
        *(login_response(http, email, "wrong password", address) for _ in range(40))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [401] * 5 + [429] * 35
    assert (await login_response(http, email, DEFAULT_PASSWORD)).status_code == 200


async def test_repeated_failed_logins_from_one_address_answer_429(
    http: httpx.AsyncClient,
) -> None:
    address = client_address()
    for _ in range(20):
        response = await login_response(http, unique_email(), "wrong password", address)
        assert response.status_code == 401
    email = unique_email()
    await register(http, email=email)
    blocked = await login_response(http, email, DEFAULT_PASSWORD, address)
    assert_problem(blocked, 429, "too_many_attempts")
    assert int(blocked.headers["Retry-After"]) > 0
    assert (await login_response(http, email, DEFAULT_PASSWORD)).status_code == 200


async def test_login_with_a_malformed_body_answers_422(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/auth/login", json={"email": "a@example.com"})
    assert_problem(response, 422, "invalid_input")


# --- refresh and logout -------------------------------------------------------------------


async def test_refresh_answers_a_new_pair_once_per_token(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    user = await sign_up(http, api_system)
    response = await http.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "Bearer"
    assert pair["refresh_token"] != user.refresh_token
    me = await http.get("/api/v1/me", headers=auth_headers(pair["access_token"]))
    assert me.status_code == 200


async def test_reusing_a_refresh_token_answers_401_and_revokes_the_family(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    user = await sign_up(http, api_system)
    rotated = await http.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    newest = rotated.json()["refresh_token"]
    reused = await http.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert_problem(reused, 401, "refresh_token_reused")
    after = await http.post("/api/v1/auth/refresh", json={"refresh_token": newest})
    assert_problem(after, 401, "invalid_refresh_token")


async def test_concurrent_refreshes_with_one_token_let_one_succeed(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    user = await sign_up(http, api_system)
    responses = await asyncio.gather(
        *(
            http.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
            for _ in range(8)
        )
    )
    assert sorted(response.status_code for response in responses) == [200] + [401] * 7


@pytest.mark.parametrize("token", ["", "garbage", "family.secret", "a" * 2000])
async def test_refresh_with_an_unknown_token_answers_401_or_422(
    http: httpx.AsyncClient, token: str
) -> None:
    response = await http.post("/api/v1/auth/refresh", json={"refresh_token": token})
    if len(token) > 1024:
        assert_problem(response, 422, "invalid_input")
    else:
        assert_problem(response, 401, "invalid_refresh_token")


async def test_logout_answers_204_and_its_refresh_token_stops_working(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    user = await sign_up(http, api_system)
    response = await http.post(
        "/api/v1/auth/logout", json={"refresh_token": user.refresh_token}, headers=user.headers
    )
    assert response.status_code == 204
    after = await http.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert_problem(after, 401, "invalid_refresh_token")


async def test_logout_cannot_revoke_someone_elses_sign_in(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    victim = await sign_up(http, api_system)
    other = await sign_up(http, api_system)
    response = await http.post(
        "/api/v1/auth/logout", json={"refresh_token": victim.refresh_token}, headers=other.headers
    )
    assert response.status_code == 204
    still = await http.post("/api/v1/auth/refresh", json={"refresh_token": victim.refresh_token})
    assert still.status_code == 200


async def test_logout_without_a_token_answers_401(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/auth/logout", json={"refresh_token": "x.y"})
    assert_problem(response, 401, "unauthenticated")


async def test_a_401_challenges_for_a_bearer_token(http: httpx.AsyncClient) -> None:
    missing = await http.get("/api/v1/me")
    forged = await http.get("/api/v1/me", headers={"Authorization": "Bearer not.a.token"})
    for response in (missing, forged):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


# --- me and token tampering -------------------------------------------------------------


async def test_me_answers_the_callers_account(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    user = await sign_up(http, api_system, full_name="Me Myself")
    response = await http.get("/api/v1/me", headers=user.headers)
    assert response.status_code == 200
    assert response.json()["id"] == user.account_id
    assert response.json()["full_name"] == "Me Myself"
    assert response.json()["roles"] == ["customer"]


def b64(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def tampered_tokens(user: SignedIn, secret: str) -> dict[str, str]:
    header, payload, signature = user.access_token.split(".")
    claims = unb64(payload)
    promoted = b64({**claims, "sub": "01SOMEONEELSE0000000000000"})
    none_header = b64({"alg": "none", "typ": "JWT", "kid": key_id_of(secret)})
    expired = AccessTokens(secret, 60, clock=lambda: datetime.now(UTC) - timedelta(hours=2))
    return {
        "changed payload": f"{header}.{promoted}.{signature}",
        "alg none": f"{none_header}.{payload}.",
        "wrong key": jwt.encode(
            claims,
            "not-the-secret-" + "k" * 40,
            algorithm="HS256",
            headers={"kid": key_id_of(secret)},
        ),
        "expired": expired.issue(user.account_id, user.email).token,
        "refresh token as access token": user.refresh_token,
        "garbage": "garbage",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "changed payload",
        "alg none",
        "wrong key",
        "expired",
        "refresh token as access token",
        "garbage",
    ],
)
async def test_tampered_access_token_answers_401(
    http: httpx.AsyncClient, api_system: RunningSystem, kind: str
) -> None:
    user = await sign_up(http, api_system)
    token = tampered_tokens(user, api_system.environment["EVENTHUNTING_JWT_SECRET"])[kind]
    response = await http.get("/api/v1/me", headers=auth_headers(token))
    assert_problem(response, 401, "unauthenticated")


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer a.b", "Basic dXNlcjpwYXNz", "Token abc"])
async def test_malformed_authorization_header_answers_401(
    http: httpx.AsyncClient, header: str
) -> None:
    response = await http.get("/api/v1/me", headers={"Authorization": header})
    assert_problem(response, 401, "unauthenticated")


# --- admin: roles and disabling -------------------------------------------------------------


async def test_admin_sets_roles_and_the_users_existing_token_gains_them(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    admin = await sign_in_admin(http, api_system)
    user = await sign_up(http, api_system)
    before = await http.get("/api/v1/admin/accounts", headers=user.headers)
    assert_problem(before, 403, "forbidden")
    response = await http.put(
        f"/api/v1/admin/accounts/{user.account_id}/roles",
        json={"roles": ["organizer", "admin"]},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["admin", "customer", "organizer"]
    after = await http.get("/api/v1/admin/accounts", headers=user.headers)
    assert after.status_code == 200
    revoke = await http.put(
        f"/api/v1/admin/accounts/{user.account_id}/roles", json={"roles": []}, headers=admin.headers
    )
    assert revoke.json()["roles"] == ["customer"]
    assert_problem(await http.get("/api/v1/admin/accounts", headers=user.headers), 403, "forbidden")


async def test_setting_roles_as_a_non_admin_answers_403(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    response = await http.put(
        f"/api/v1/admin/accounts/{organizer.account_id}/roles",
        json={"roles": ["admin"]},
        headers=organizer.headers,
    )
    assert_problem(response, 403, "forbidden")


async def test_setting_roles_without_a_token_answers_401(http: httpx.AsyncClient) -> None:
    response = await http.put("/api/v1/admin/accounts/x/roles", json={"roles": []})
    assert_problem(response, 401, "unauthenticated")


async def test_setting_roles_of_an_unknown_account_answers_404(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    admin = await sign_in_admin(http, api_system)
    response = await http.put(
        "/api/v1/admin/accounts/01NOSUCHACCOUNT00000000000/roles",
        json={"roles": ["organizer"]},
        headers=admin.headers,
    )
    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize("roles", [["staff"], ["superuser"], "admin", [1]])
async def test_setting_unknown_roles_answers_422(
    http: httpx.AsyncClient, api_system: RunningSystem, roles: Any
) -> None:
    admin = await sign_in_admin(http, api_system)
    user = await sign_up(http, api_system)
    response = await http.put(
        f"/api/v1/admin/accounts/{user.account_id}/roles",
        json={"roles": roles},
        headers=admin.headers,
    )
    assert_problem(response, 422, "invalid_input")


async def test_disabled_account_is_locked_out_at_once(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    admin = await sign_in_admin(http, api_system)
    user = await sign_up(http, api_system)
    response = await http.put(
        f"/api/v1/admin/accounts/{user.account_id}/disabled",
        json={"disabled": True, "reason": "test"},
        headers=admin.headers,
    )
    assert response.status_code == 200
    assert response.json()["disabled"] is True
    assert_problem(await http.get("/api/v1/me", headers=user.headers), 401, "account_disabled")
    refreshed = await http.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert_problem(refreshed, 401, "account_disabled")
    login = await login_response(http, user.email, user.password)
    assert_problem(login, 401, "account_disabled")
    enabled = await http.put(
        f"/api/v1/admin/accounts/{user.account_id}/disabled",
        json={"disabled": False},
        headers=admin.headers,
    )
    assert enabled.json()["disabled"] is False
    assert (await login_response(http, user.email, user.password)).status_code == 200


async def test_admin_cannot_disable_their_own_account(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    admin = await sign_in_admin(http, api_system)
    response = await http.put(
        f"/api/v1/admin/accounts/{admin.account_id}/disabled",
        json={"disabled": True},
        headers=admin.headers,
    )
    assert_problem(response, 422, "invalid_input")


async def test_bootstrap_admin_has_the_admin_role(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    admin = await sign_in_admin(http, api_system)
    assert "admin" in admin.roles


async def test_admin_account_list_comes_from_the_read_model(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    admin = await sign_in_admin(http, api_system)
    user = await sign_up(http, api_system, roles=["organizer"])
    for _ in range(100):
        response = await http.get(
            "/api/v1/admin/accounts", params={"email": user.email}, headers=admin.headers
        )
        assert response.status_code == 200
        if response.json()["items"] and response.json()["items"][0]["roles"] == [
            "customer",
            "organizer",
        ]:
            break
        await asyncio.sleep(0.1)
    body = response.json()
    assert body["total"] == 1
    assert body["items"][0]["id"] == user.account_id
    assert (body["page"], body["page_size"]) == (1, 20)
