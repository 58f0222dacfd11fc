"""Domain errors: business rule violations with a stable machine code."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """What kind of failure an error is, independent of any transport."""

    INVALID = "invalid"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    UNAUTHENTICATED = "unauthenticated"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


class DomainError(Exception):
    """A rule said no. `code` is stable and part of the public contract."""

    kind: ErrorKind = ErrorKind.CONFLICT
    code: str = "conflict"
    title: str = "Conflict with the current state"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class InvalidInput(DomainError):
    kind = ErrorKind.INVALID
    code = "invalid_input"
    title = "Invalid input"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, str]] | None = None,
        code: str | None = None,
    ) -> None:
        if errors is None:
            errors = [{"field": field or "", "message": detail}]
        super().__init__(detail, code=code, errors=errors)


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    kind = ErrorKind.CONFLICT
    code = "conflict"
    title = "Conflict with the current state"


class Forbidden(DomainError):
    kind = ErrorKind.FORBIDDEN
    code = "forbidden"
    title = "Forbidden"


class Unauthenticated(DomainError):
    kind = ErrorKind.UNAUTHENTICATED
    code = "unauthenticated"
    title = "Authentication required"


class RateLimited(DomainError):
    kind = ErrorKind.RATE_LIMITED
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_seconds: int, code: str | None = None) -> None:
        super().__init__(detail, code=code, retry_after_seconds=retry_after_seconds)
        self.retry_after_seconds = retry_after_seconds


class IdempotencyKeyReused(Conflict):
    """A command came again with a known Idempotency-Key but a different body."""

    code = "idempotency_key_reused"
    title = "Idempotency key reused with a different request"

    def __init__(
        self, detail: str = "This Idempotency-Key was used with a different request body."
    ) -> None:
        super().__init__(detail)
