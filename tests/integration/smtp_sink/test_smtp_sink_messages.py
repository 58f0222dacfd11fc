"""The SMTP sink keeps what it accepts and serves it as JSON, raw bytes, parts and pages."""

from __future__ import annotations

import smtplib
from urllib.parse import quote

import httpx

from tests.integration.smtp_sink.mail import RECIPIENT, SENDER, send, ticket_mail, tiny_png
from tests.support.servers import SmtpSink


def only_message_id(api: httpx.Client) -> str:
    listed = api.get("/api/messages").json()
    assert len(listed) == 1
    return str(listed[0]["id"])


def test_a_message_with_an_inline_png_is_listed_and_served_with_its_parts(
    sink: SmtpSink, api: httpx.Client
) -> None:
    raw = ticket_mail(subject="Tickets for Hanoi Jazz Night", content_id="qr-7@eventhunting.test")
    send(sink, raw, recipients=(RECIPIENT, "second@example.test"))

    listed = api.get("/api/messages").json()
    assert [(m["from"], m["to"], m["subject"], m["size"]) for m in listed] == [
        (SENDER, [RECIPIENT, "second@example.test"], "Tickets for Hanoi Jazz Night", len(raw))
    ]
    assert listed[0]["received_at"].endswith("Z")

    detail = api.get(f"/api/messages/{listed[0]['id']}").json()
    headers = {header["name"]: header["value"] for header in detail["headers"]}
    assert headers["Subject"] == "Tickets for Hanoi Jazz Night"
    assert headers["To"] == RECIPIENT
    assert detail["text"] == "Show this code at the door.\n"
    assert 'src="cid:qr-7@eventhunting.test"' in detail["html"]
    parts = {part["content_type"]: part for part in detail["parts"]}
    assert set(parts) == {"text/plain", "text/html", "image/png", "application/pdf"}
    assert parts["image/png"]["content_id"] == "qr-7@eventhunting.test"
    assert parts["image/png"]["id"] == "qr-7@eventhunting.test"
    assert parts["image/png"]["size"] == len(tiny_png())
    assert parts["application/pdf"]["filename"] == "invoice.pdf"
    assert parts["application/pdf"]["disposition"] == "attachment"

    image = api.get(f"/api/messages/{listed[0]['id']}/parts/qr-7@eventhunting.test")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == tiny_png()
    attachment_id = parts["application/pdf"]["id"]
    attachment = api.get(f"/api/messages/{listed[0]['id']}/parts/{attachment_id}")
    assert attachment.content == b"%PDF-1.4 invoice"


def test_the_raw_message_is_byte_for_byte_what_was_sent(sink: SmtpSink, api: httpx.Client) -> None:
    # A line starting with a dot is dot-stuffed on the wire; the sink must undo it.
    raw = ticket_mail().replace(b"Show this code", b".Show this code", 1)
    send(sink, raw)

    response = api.get(f"/api/messages/{only_message_id(api)}/raw")
    assert response.status_code == 200
    assert response.headers["content-type"] == "message/rfc822"
    assert response.content == raw


def test_messages_are_listed_newest_first_and_delete_clears_them(
    sink: SmtpSink, api: httpx.Client
) -> None:
    for subject in ("first", "second", "third"):
        send(sink, ticket_mail(subject=subject))
    assert [m["subject"] for m in api.get("/api/messages").json()] == ["third", "second", "first"]

    assert api.delete("/api/messages").status_code == 204
    assert api.get("/api/messages").json() == []


def test_an_unknown_message_or_part_is_404(sink: SmtpSink, api: httpx.Client) -> None:
    send(sink, ticket_mail())
    message_id = only_message_id(api)
    assert api.get("/api/messages/01NOSUCHMESSAGE").status_code == 404
    assert api.get("/messages/01NOSUCHMESSAGE").status_code == 404
    assert api.get(f"/api/messages/{message_id}/parts/nothing@here").status_code == 404


def test_the_inbox_and_message_pages_show_the_mail_and_its_inline_image(
    sink: SmtpSink, api: httpx.Client
) -> None:
    send(sink, ticket_mail(subject="Pages <&> tickets", content_id="qr-9@eventhunting.test"))
    message_id = only_message_id(api)

    inbox = api.get("/")
    assert inbox.status_code == 200
    assert inbox.headers["content-type"].startswith("text/html")
    assert "Pages &lt;&amp;&gt; tickets" in inbox.text
    assert f'href="/messages/{message_id}"' in inbox.text

    page = api.get(f"/messages/{message_id}")
    assert page.status_code == 200
    assert "Pages &lt;&amp;&gt; tickets" in page.text
    assert "<iframe" in page.text
    assert "sandbox" in page.text
    assert "cid:" not in page.text
    image_url = f"/api/messages/{message_id}/parts/{quote('qr-9@eventhunting.test', safe='@')}"
    # The HTML is escaped into the srcdoc attribute, with its cid: reference rewritten.
    assert f"&lt;img src=&#34;{image_url}&#34;&gt;" in page.text
    assert "Show this code at the door." in page.text
    assert "invoice.pdf" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "img-src 'self'" in policy

    image = api.get(image_url)
    assert image.status_code == 200
    assert image.content == tiny_png()


def test_a_session_may_authenticate_with_any_credentials_by_default(
    sink: SmtpSink, api: httpx.Client
) -> None:
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as client:
        client.login("anyone", "anything")
        client.sendmail(SENDER, [RECIPIENT], ticket_mail())
    detail = api.get(f"/api/messages/{only_message_id(api)}").json()
    assert detail["auth_user"] == "anyone"


def test_the_inbox_pages_delete_button_empties_the_inbox(sink: SmtpSink, api: httpx.Client) -> None:
    send(sink, ticket_mail(subject="to be deleted"))
    response = api.post("/clear")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert api.get("/api/messages").json() == []
    assert "No messages yet." in api.get("/").text
