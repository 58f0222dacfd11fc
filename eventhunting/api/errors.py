"""Every error leaves the API as RFC 9457 problem+json with a stable `code`, mapped here only."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap

from eventhunting.domain.errors import DomainError, ErrorKind

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://eventhunting.dev/problems/"
BEARER_CHALLENGE = 'Bearer realm="eventhunting"'

STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.UNAVAILABLE: 503,
}

logger = logging.getLogger("eventhunting.api")


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_error_response(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    assert isinstance(error, DomainError)
    status = STATUS_BY_KIND[error.kind]
    headers: dict[str, str] = {}
    extra = dict(error.extra)
    retry_after = extra.pop("retry_after_seconds", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = BEARER_CHALLENGE
    return problem(status, error.code, error.title, error.detail, headers=headers or None, **extra)


# msgspec names the offending location `$.items[0].quantity`; clients want `items[0].quantity`.
_LOCATION = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")


def field_error(item: dict[str, Any]) -> dict[str, str]:
    """One `{field, message}` of a 422 from one of Litestar's or msgspec's validation messages."""
    message = str(item.get("message", "invalid value"))
    field = str(item.get("key") or "")
    found = _LOCATION.search(message)
    if found:
        field, message = found["path"], message[: found.start()]
    elif field == "data":
        field = ""  # the body as a whole
    if message == f"'{item.get('key')}'":
        # A parameter that was not sent at all: Litestar reports the bare name.
        message = "a JSON body is required" if item.get("key") == "data" else "this is required"
    for pattern, meaning in ((_MISSING_FIELD, "this field is required"), (_UNKNOWN_FIELD, None)):
        named = pattern.match(message)
        if named:
            field = f"{field}.{named['name']}" if field else named["name"]
            message = meaning or "unknown field; this body does not take it"
    return {"field": field, "message": message}


def validation_error_response(
    _: Request[Any, Any, Any], error: Exception
) -> Response[dict[str, Any]]:
    assert isinstance(error, ValidationException)
    errors = [field_error(item) for item in error.extra or [] if isinstance(item, dict)]
    detail = error.detail if not errors else "The request has invalid fields."
    if not errors:
        errors.append({"field": "", "message": _public_detail(detail)})
        detail = "The request body could not be read."
    return problem(422, "invalid_input", "Invalid input", detail, errors=errors)


def _public_detail(detail: str) -> str:
    return detail.split(" (byte ")[0] if detail else "invalid request"


def http_error_response(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    assert isinstance(error, HTTPException)
    status = error.status_code
    if status == 400:
        # A body that is not JSON at all is invalid input like any other (API.md: 422).
        message = _public_detail(error.detail)
        return problem(
            422,
            "invalid_input",
            "Invalid input",
            "The request body could not be read.",
            errors=[{"field": "", "message": message}],
        )
    code, title = {
        401: ("unauthenticated", "Authentication required"),
        403: ("forbidden", "Forbidden"),
        404: ("not_found", "Not found"),
        405: ("method_not_allowed", "Method not allowed"),
        429: ("rate_limited", "Too many requests"),
    }.get(status, ("http_error", "Request failed"))
    detail = error.detail if status < 500 else "The server could not complete the request."
    headers = dict(error.headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", BEARER_CHALLENGE)
    return problem(status, code, title, detail, headers=headers or None)


def unexpected_error_response(
    request: Request[Any, Any, Any], error: Exception
) -> Response[dict[str, Any]]:
    logger.error(
        "unhandled error",
        exc_info=error,
        extra={"path": request.url.path, "method": request.method},
    )
    return problem(
        500, "internal_error", "Internal error", "The server could not complete the request."
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: domain_error_response,
    ValidationException: validation_error_response,
    NotAuthorizedException: http_error_response,
    PermissionDeniedException: http_error_response,
    NotFoundException: http_error_response,
    MethodNotAllowedException: http_error_response,
    HTTPException: http_error_response,
    Exception: unexpected_error_response,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "MediaType", "problem"]
