"""EVENTHUNTING_SMTP_URL: host, port, TLS mode and credentials, and refusals naming the variable."""

from __future__ import annotations

import pytest

from eventhunting.mail.smtp_mailer import SmtpMailer
from eventhunting.mail.smtp_url import SmtpEndpoint, parse_smtp_url
from eventhunting.settings import SettingsError, load_settings

VALID = {
    "EVENTHUNTING_REDIS_URL": "redis://127.0.0.1:6390/0",
    "EVENTHUNTING_MONGODB_URL": "mongodb://127.0.0.1:27017/tickets?replicaSet=rs0",
    "EVENTHUNTING_JWT_SECRET": "x" * 40,
}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://mail.example.com",
            SmtpEndpoint(
                host="mail.example.com",
                port=25,
                implicit_tls=False,
                starttls="auto",
                tls_verify=False,
            ),
        ),
        (
            "smtp://mailer:p%40ss%3Aword@mail.example.com:587?starttls=required",
            SmtpEndpoint(
                host="mail.example.com",
                port=587,
                implicit_tls=False,
                starttls="required",
                tls_verify=True,
                username="mailer",
                password="p@ss:word",
            ),
        ),
        (
            "smtp://127.0.0.1:1025?starttls=required&tls_verify=false",
            SmtpEndpoint(
                host="127.0.0.1",
                port=1025,
                implicit_tls=False,
                starttls="required",
                tls_verify=False,
            ),
        ),
        (
            "smtp://127.0.0.1:1025?starttls=never",
            SmtpEndpoint(
                host="127.0.0.1", port=1025, implicit_tls=False, starttls="never", tls_verify=False
            ),
        ),
        (
            "smtps://u:p@smtp.example.com",
            SmtpEndpoint(
                host="smtp.example.com",
                port=465,
                implicit_tls=True,
                starttls="never",
                tls_verify=True,
                username="u",
                password="p",
            ),
        ),
        (
            "smtp://mail.example.com?tls_verify=true",
            SmtpEndpoint(
                host="mail.example.com",
                port=25,
                implicit_tls=False,
                starttls="auto",
                tls_verify=True,
            ),
        ),
    ],
)
def test_an_smtp_url_reads_into_where_and_how_to_send(url: str, expected: SmtpEndpoint) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.example.com", "smtp:// or smtps://"),
        ("smtp://", "no host"),
        ("smtp://mail.example.com/inbox", "no path"),
        ("smtp://mail.example.com:99999", "port"),
        ("smtp://mail.example.com?tls=yes", "unknown option 'tls'"),
        ("smtp://mail.example.com?starttls=maybe", "auto, required or never"),
        ("smtps://mail.example.com?starttls=required", "starttls applies to smtp://"),
        ("smtp://mail.example.com?tls_verify=perhaps", "true or false"),
    ],
)
def test_a_bad_smtp_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_smtp_url(url)


def test_the_endpoint_never_shows_its_password() -> None:
    endpoint = parse_smtp_url("smtp://mailer:hunter2-secret@mail.example.com:587")
    assert "hunter2" not in repr(endpoint)
    assert "hunter2" not in str(endpoint)
    assert "mailer:***@mail.example.com:587" in repr(endpoint)


def test_settings_refuse_a_bad_smtp_url_in_one_line_without_its_password() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(
            {**VALID, "EVENTHUNTING_SMTP_URL": "smtp://u:hunter2@mail.example.com?starttls=on"},
            dotenv=None,
        )
    message = str(raised.value)
    assert message.startswith("EVENTHUNTING_SMTP_URL is invalid: starttls must be")
    assert "hunter2" not in message
    assert "\n" not in message


def test_smtp_retry_settings_have_bounded_defaults() -> None:
    mail = load_settings(VALID, dotenv=None).mail
    assert (mail.smtp_attempts, mail.smtp_retry_max_seconds, mail.smtp_timeout_seconds) == (
        5,
        30.0,
        30.0,
    )
    with pytest.raises(SettingsError, match=r"^EVENTHUNTING_SMTP_ATTEMPTS is invalid"):
        load_settings({**VALID, "EVENTHUNTING_SMTP_ATTEMPTS": "0"}, dotenv=None)


def test_the_mailer_is_built_from_the_settings() -> None:
    settings = load_settings(
        {
            **VALID,
            "EVENTHUNTING_SMTP_URL": "smtps://u:p@mail.example.test",
            "EVENTHUNTING_SMTP_ATTEMPTS": "7",
            "EVENTHUNTING_SMTP_RETRY_MAX_SECONDS": "12.5",
            "EVENTHUNTING_SMTP_TIMEOUT_SECONDS": "9",
        },
        dotenv=None,
    )
    built = SmtpMailer.from_settings(settings.mail)
    assert (built.endpoint.host, built.endpoint.port, built.endpoint.implicit_tls) == (
        "mail.example.test",
        465,
        True,
    )
    assert (built.attempts, built.retry_max_seconds, built.timeout_seconds) == (7, 12.5, 9.0)
