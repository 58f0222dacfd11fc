"""Log lines are one JSON object each; the per-request fast path writes the same object."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import msgspec
import pytest

from eventhunting.structured_logging import configure_logging, log_fields


class Fields(msgspec.Struct):
    request_id: str
    status: int
    duration_ms: float


FIELDS = Fields(request_id="r-1", status=201, duration_ms=1.25)


@pytest.fixture
def json_stream() -> Iterator[io.StringIO]:
    """configure_logging's handler, writing to a string instead of stderr."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("INFO")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_fast_line_is_the_object_the_formatter_writes(json_stream: io.StringIO) -> None:
    logger = logging.getLogger("eventhunting.test.requests")
    log_fields(logger, logging.INFO, "request", FIELDS)
    logger.info("request", extra=msgspec.structs.asdict(FIELDS))
    fast, formatted = lines(json_stream)
    assert list(fast) == list(formatted)
    assert list(fast)[:4] == ["time", "level", "logger", "event"]
    assert {key: value for key, value in fast.items() if key != "time"} == {
        "level": "info",
        "logger": "eventhunting.test.requests",
        "event": "request",
        "request_id": "r-1",
        "status": 201,
        "duration_ms": 1.25,
    }
    assert str(fast["time"]).endswith("Z")


def test_fields_below_the_level_are_not_written(json_stream: io.StringIO) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    log_fields(logging.getLogger("eventhunting.test.quiet"), logging.INFO, "request", FIELDS)
    assert json_stream.getvalue() == ""


def test_fields_reach_other_handlers_through_logging(
    json_stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="eventhunting.test.captured"):
        log_fields(logging.getLogger("eventhunting.test.captured"), logging.INFO, "request", FIELDS)
    (record,) = [r for r in caplog.records if r.name == "eventhunting.test.captured"]
    assert record.getMessage() == "request"
    assert record.__dict__["request_id"] == "r-1"
    assert lines(json_stream)[0]["status"] == 201
