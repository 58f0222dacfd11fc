"""Query parameters shared by routes: page bounds for lists and RFC 3339 instants."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar.params import Parameter, ParameterKwarg

from eventhunting.domain.errors import InvalidInput

MAX_PAGE = 10_000
"""Deepest page of any list: nobody browses further, and the skip it costs stays small
(an unbounded page overflowed MongoDB's 64-bit skip)."""
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20

PageNumber = Annotated[
    int, Parameter(ge=1, le=MAX_PAGE, description="Page to answer, counted from 1.")
]
PageSize = Annotated[int, Parameter(ge=1, le=MAX_PAGE_SIZE, description="Items per page.")]

# A query string has no JSON types: the instant arrives as text and is read strictly here,
# so a bare number is not taken for Unix time, nor a time without an offset for UTC.
_INSTANT = Annotated[datetime, msgspec.Meta(tz=True)]
MAX_INSTANT_LENGTH = 64


EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


def instant_parameter(description: str, *, query: str | None = None) -> Any:
    """An optional query parameter holding an RFC 3339 date-time with an offset (read with
    `instant_of`); `query` names it when its name is not the handler argument's."""
    return ParameterKwarg(
        query=query,
        description=f"{description} RFC 3339 with an offset, e.g. 2026-05-01T19:00:00+07:00.",
        format="date-time",
        max_length=MAX_INSTANT_LENGTH,
        required=False,
    )


def instant_of(text: str | None, field: str) -> datetime | None:
    """The instant an `instant_parameter` names; InvalidInput naming `field` when it is not one."""
    if text is None:
        return None
    try:
        moment = msgspec.convert(text, _INSTANT, strict=True)
    except msgspec.ValidationError:
        raise InvalidInput(
            "must be an RFC 3339 date-time with an offset, e.g. 2026-05-01T19:00:00+07:00",
            field=field,
        ) from None
    if not EARLIEST_INSTANT <= moment < LATEST_INSTANT:
        # Nothing happened outside these years, and date arithmetic near year 1 or 9999
        # (sales buckets) would overflow.
        raise InvalidInput("must be between the years 1970 and 9000", field=field)
    return moment
