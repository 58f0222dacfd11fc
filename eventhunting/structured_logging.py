"""One JSON object per log line, with whatever context the caller passes in `extra`."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

# Attributes every LogRecord has; anything else came from `extra=` and is logged as a field.
# uvicorn adds `color_message`, a duplicate of the message with terminal colours.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}
_encoder = msgspec.json.Encoder()
# The handler configure_logging installed; `log_fields` writes to it directly.
_json_handler: logging.StreamHandler[Any] | None = None
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}


def utc_timestamp(created: float) -> str:
    """`2026-01-31T12:00:00.123Z`, the `time` of every line."""
    seconds = int(created)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int((created - seconds) * 1000):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    """Formats a record as a single JSON object: time, level, logger, event, fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(document).decode()


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines."""
    global _json_handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _json_handler = handler
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def _only_json_handler(logger: logging.Logger, level: int) -> logging.StreamHandler[Any] | None:
    """The configured JSON handler when it alone would handle `logger`'s record, unfiltered."""
    handler = _json_handler
    if handler is None or handler.level > level or handler.filters:
        return None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        if current.parent is None:  # the root logger
            return handler if current.handlers == [handler] else None
        if current.handlers:
            return None
        if not current.propagate:
            return None
        current = current.parent
    return None


def log_fields(logger: logging.Logger, level: int, event: str, fields: msgspec.Struct) -> None:
    """Log one line with `fields` (a Struct) as `logger.log(level, event, extra=...)` would.

    The line is the same JSON object JsonFormatter writes (time, level, logger, event, then
    the fields in order), but when configure_logging's handler alone would write it, it is
    encoded in one pass and written straight to the handler's stream: a hot path (one line
    per HTTP request) skips building a LogRecord and walking the handlers.
    """
    if not logger.isEnabledFor(level):
        return
    handler = _only_json_handler(logger, level)
    level_name = _LEVEL_NAMES.get(level)
    if handler is None or level_name is None:
        logger.log(level, event, extra=msgspec.structs.asdict(fields))
        return
    head = _encoder.encode(
        {
            "time": utc_timestamp(time.time()),
            "level": level_name,
            "logger": logger.name,
            "event": event,
        }
    )
    body = _encoder.encode(fields)
    # Both are JSON objects: join them into one by dropping the inner braces.
    joined = head[:-1] + b"," + body[1:] if len(body) > 2 else head
    line = joined.decode() + "\n"
    handler.acquire()
    try:
        handler.stream.write(line)
        handler.flush()
    except Exception:  # as logging.Handler.emit does: logging never fails the caller
        handler.handleError(logging.makeLogRecord({"msg": event, "levelno": level}))
    finally:
        handler.release()
