"""The sink keeps messages across restarts with --data-dir, and speaks STARTTLS and AUTH."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import httpx
import pytest

from tests.integration.smtp_sink.mail import RECIPIENT, SENDER, send, ticket_mail, tiny_png
from tests.support.servers import running_smtp_sink


def test_messages_survive_a_restart_of_the_sink_with_a_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "sink"
    first, second = ticket_mail(subject="before restart 1"), ticket_mail(subject="before restart 2")
    with running_smtp_sink(data_dir) as sink:
        send(sink, first)
        send(sink, second)
        before = httpx.get(f"{sink.http_url}/api/messages").json()
    assert sorted(path.name for path in (data_dir / "messages").iterdir()) == sorted(
        f"{message['id']}.eml" for message in before
    )
    assert (data_dir / "index.json").exists()

    with running_smtp_sink(data_dir) as sink, httpx.Client(base_url=sink.http_url) as api:
        assert api.get("/api/messages").json() == before
        newest = before[0]["id"]
        assert api.get(f"/api/messages/{newest}/raw").content == second
        detail = api.get(f"/api/messages/{newest}").json()
        image = next(part for part in detail["parts"] if part["content_type"] == "image/png")
        assert api.get(f"/api/messages/{newest}/parts/{image['id']}").content == tiny_png()
        send(sink, ticket_mail(subject="after restart"))
        assert [m["subject"] for m in api.get("/api/messages").json()] == [
            "after restart",
            "before restart 2",
            "before restart 1",
        ]
        assert api.delete("/api/messages").status_code == 204

    with running_smtp_sink(data_dir) as sink:
        assert httpx.get(f"{sink.http_url}/api/messages").json() == []
    assert list((data_dir / "messages").iterdir()) == []


def test_starttls_and_configured_credentials_are_required_when_set() -> None:
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # the sink's certificate is self-signed
    with running_smtp_sink(None, "--user", "mailer:s3cret", "--require-auth") as sink:
        with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as client:
            client.starttls(context=unverified)
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("mailer", "wrong")
        with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as client:
            client.ehlo()
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail(SENDER, [RECIPIENT], ticket_mail())
            assert refused.value.smtp_code == 530  # authentication required
        with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as client:
            client.starttls(context=unverified)
            client.login("mailer", "s3cret")
            client.sendmail(SENDER, [RECIPIENT], ticket_mail(subject="over TLS"))

        listed = httpx.get(f"{sink.http_url}/api/messages").json()
        assert [m["subject"] for m in listed] == ["over TLS"]
        detail = httpx.get(f"{sink.http_url}/api/messages/{listed[0]['id']}").json()
        assert detail["auth_user"] == "mailer"
