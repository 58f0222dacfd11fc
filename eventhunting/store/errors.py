"""Errors raised by the event store when an append is refused."""

from __future__ import annotations

from eventhunting.domain.errors import Conflict


class ConcurrencyError(Conflict):
    """The aggregate stream moved on since it was read: reload and decide again."""

    code = "concurrent_modification"
    title = "The resource was changed concurrently"

    def __init__(
        self, actual_version: int, *, expected_version: int | None = None, stream: str = ""
    ) -> None:
        super().__init__(
            f"stream {stream!r} is at version {actual_version}, expected {expected_version}",
            actual_version=actual_version,
        )
        self.actual_version = actual_version
        self.expected_version = expected_version
        self.stream = stream


class GuardRejected(Conflict):
    """A counter or claim guard of the append failed; nothing was written."""

    def __init__(self, code: str, name: str) -> None:
        super().__init__(f"guard {code!r} rejected the change of {name!r}", code=code, name=name)
        self.name = name
