"""Messages on disk: one .eml file per message and an index of their envelopes."""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path

import msgspec

log = logging.getLogger("eventhunting.standins.smtp")

FORMAT = "eventhunting-smtp-sink"
VERSION = 1


class MessageEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """What the SMTP session said about one message, beside its raw bytes."""

    id: str
    mail_from: str
    rcpt_tos: list[str]
    received_at: datetime
    size: int
    auth_user: str | None = None


class Index(msgspec.Struct, kw_only=True):
    format: str = FORMAT
    version: int = VERSION
    messages: list[MessageEnvelope] = msgspec.field(default_factory=list)


def write_atomically(path: Path, content: bytes) -> None:
    """A temporary file in the same folder, fsynced, then renamed over `path`."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class MessageFolder:
    """`<data dir>/messages/<id>.eml` and `<data dir>/index.json` (oldest first)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.messages_directory = directory / "messages"
        self.index_path = directory / "index.json"

    def prepare(self) -> None:
        self.messages_directory.mkdir(parents=True, exist_ok=True)

    def message_path(self, message_id: str) -> Path:
        return self.messages_directory / f"{message_id}.eml"

    def save(self, envelope: MessageEnvelope, raw: bytes, index: list[MessageEnvelope]) -> None:
        """Write the message, then the index that lists it: a crash leaves at most a stray file."""
        write_atomically(self.message_path(envelope.id), raw)
        self.write_index(index)

    def write_index(self, index: list[MessageEnvelope]) -> None:
        write_atomically(self.index_path, msgspec.json.encode(Index(messages=index)))

    def clear(self, message_ids: list[str]) -> None:
        self.write_index([])
        for message_id in message_ids:
            self.message_path(message_id).unlink(missing_ok=True)

    def load(self) -> list[tuple[MessageEnvelope, bytes]]:
        """Every indexed message whose file is there, oldest first."""
        if not self.index_path.exists():
            return []
        index = msgspec.json.decode(self.index_path.read_bytes(), type=Index)
        if index.format != FORMAT or index.version != VERSION:
            raise ValueError(f"{self.index_path} is not a {FORMAT} v{VERSION} index")
        loaded: list[tuple[MessageEnvelope, bytes]] = []
        for envelope in index.messages:
            try:
                raw = self.message_path(envelope.id).read_bytes()
            except FileNotFoundError:
                log.warning("indexed message file is missing", extra={"message_id": envelope.id})
                continue
            loaded.append((envelope, raw))
        return loaded
