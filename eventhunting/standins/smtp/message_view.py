"""Reading a stored message: its headers, text and HTML bodies, parts and cid: links."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from urllib.parse import unquote

import msgspec

from eventhunting.standins.smtp.inbox import StoredMessage

_parser = BytesParser(policy=policy.default)
# `cid:` URLs in src, href, background and CSS url(...); RFC 2392 says they are URL-encoded.
CID_REFERENCE = re.compile(r"cid:([^\"'\s)>]+)", re.IGNORECASE)


class MessageSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the message list; `from` and `to` are the SMTP envelope."""

    id: str
    mail_from: str = msgspec.field(name="from")
    rcpt_tos: list[str] = msgspec.field(name="to")
    subject: str
    received_at: datetime
    size: int


class HeaderView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    value: str


class PartView(msgspec.Struct, frozen=True, kw_only=True):
    """A leaf MIME part; `id` is its Content-ID without <> or, failing that, `part-<n>`."""

    id: str
    content_id: str | None
    content_type: str
    filename: str | None
    disposition: str | None
    size: int


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    mail_from: str = msgspec.field(name="from")
    rcpt_tos: list[str] = msgspec.field(name="to")
    subject: str
    received_at: datetime
    size: int
    auth_user: str | None
    headers: list[HeaderView]
    text: str | None
    html: str | None
    parts: list[PartView]


def summary_of(message: StoredMessage) -> MessageSummary:
    envelope = message.envelope
    return MessageSummary(
        id=envelope.id,
        mail_from=envelope.mail_from,
        rcpt_tos=envelope.rcpt_tos,
        subject=message.subject,
        received_at=envelope.received_at,
        size=envelope.size,
    )


def parse(raw: bytes) -> EmailMessage:
    parsed = _parser.parsebytes(raw)
    assert isinstance(parsed, EmailMessage)  # policy.default builds EmailMessage
    return parsed


def body_text(message: EmailMessage, subtype: str) -> str | None:
    body = message.get_body(preferencelist=(subtype,))
    if body is None:
        return None
    return content_text(body)


def content_text(part: Message) -> str:
    """A text part as str with \n line ends; an unknown or lying charset still gives text."""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, ValueError):
        content = None
    if not isinstance(content, str):
        payload = part.get_payload(decode=True)
        content = (payload if isinstance(payload, bytes) else b"").decode("utf-8", "replace")
    return content.replace("\r\n", "\n")


def leaf_parts(message: EmailMessage) -> list[tuple[PartView, Message]]:
    """Every non-container part in document order, each with an id usable in a URL path."""
    found: list[tuple[PartView, Message]] = []
    used: set[str] = set()
    for number, part in enumerate(
        (part for part in message.walk() if not part.is_multipart()), start=1
    ):
        content_id = part.get("content-id")
        bare_id = str(content_id).strip().strip("<>").strip() if content_id else None
        part_id = f"part-{number}"
        if bare_id and "/" not in bare_id and bare_id not in used:
            part_id = bare_id
        used.add(part_id)
        payload = part.get_payload(decode=True)
        found.append(
            (
                PartView(
                    id=part_id,
                    content_id=bare_id or None,
                    content_type=part.get_content_type(),
                    filename=part.get_filename(),
                    disposition=part.get_content_disposition(),
                    size=len(payload) if isinstance(payload, bytes) else 0,
                ),
                part,
            )
        )
    return found


def view_of(message: StoredMessage) -> MessageView:
    parsed = parse(message.raw)
    envelope = message.envelope
    return MessageView(
        id=envelope.id,
        mail_from=envelope.mail_from,
        rcpt_tos=envelope.rcpt_tos,
        subject=message.subject,
        received_at=envelope.received_at,
        size=envelope.size,
        auth_user=envelope.auth_user,
        headers=[HeaderView(name=name, value=str(value)) for name, value in parsed.items()],
        text=body_text(parsed, "plain"),
        html=body_text(parsed, "html"),
        parts=[view for view, _ in leaf_parts(parsed)],
    )


def part_content(message: StoredMessage, part_id: str) -> tuple[PartView, bytes] | None:
    """The decoded bytes of the part with this id (its Content-ID, with or without <>)."""
    wanted = part_id.strip().strip("<>")
    for view, part in leaf_parts(parse(message.raw)):
        if wanted in (view.id, view.content_id):
            payload = part.get_payload(decode=True)
            return view, payload if isinstance(payload, bytes) else b""
    return None


def with_part_urls(html: str, parts: list[PartView], url_of_part: Callable[[str], str]) -> str:
    """Point `cid:` references of the HTML at the URLs serving those parts."""
    by_content_id = {part.content_id: part.id for part in parts if part.content_id}

    def replace(match: re.Match[str]) -> str:
        part_id = by_content_id.get(unquote(match.group(1)))
        return match.group(0) if part_id is None else url_of_part(part_id)

    return CID_REFERENCE.sub(replace, html)
