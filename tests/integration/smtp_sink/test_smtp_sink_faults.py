"""Faults set through the sink's API: refuse, drop and outages, each counted."""

from __future__ import annotations

import smtplib
import socket
import time

import httpx
import pytest

from tests.integration.smtp_sink.mail import RECIPIENT, SENDER, send, ticket_mail
from tests.support.servers import SmtpSink


def counters(api: httpx.Client) -> dict[str, int]:
    found: dict[str, int] = api.get("/api/counters").json()
    return found


def subjects(api: httpx.Client) -> list[str]:
    return [message["subject"] for message in api.get("/api/messages").json()]


def test_refusing_the_next_two_messages_at_data_refuses_exactly_two_then_accepts(
    sink: SmtpSink, api: httpx.Client
) -> None:
    response = api.post("/api/faults", json={"kind": "refuse", "count": 2, "code": 451})
    assert response.status_code == 200
    assert response.json()["pending"] == [
        {"kind": "refuse", "count": 2, "at": "data", "code": 451, "message": None}
    ]

    for attempt in (1, 2):
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(sink, ticket_mail(subject=f"attempt {attempt}"))
        assert refused.value.smtp_code == 451
    send(sink, ticket_mail(subject="attempt 3"))

    assert subjects(api) == ["attempt 3"]
    assert counters(api) == {"accepted": 1, "refused": 2, "dropped": 0}
    assert api.get("/api/faults").json()["pending"] == []


def test_refusing_at_rcpt_refuses_every_recipient_of_that_message_once(
    sink: SmtpSink, api: httpx.Client
) -> None:
    api.post(
        "/api/faults",
        json={"kind": "refuse", "at": "rcpt", "code": 550, "message": "5.1.1 no such user"},
    ).raise_for_status()

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(sink, ticket_mail(), recipients=(RECIPIENT, "second@example.test"))
    assert refused.value.recipients == {
        RECIPIENT: (550, b"5.1.1 no such user"),
        "second@example.test": (550, b"5.1.1 no such user"),
    }
    send(sink, ticket_mail(subject="after the refusal"))

    assert subjects(api) == ["after the refusal"]
    assert counters(api) == {"accepted": 1, "refused": 1, "dropped": 0}


def test_faults_apply_in_the_order_they_were_set(sink: SmtpSink, api: httpx.Client) -> None:
    api.post("/api/faults", json={"kind": "refuse", "code": 421}).raise_for_status()
    api.post("/api/faults", json={"kind": "drop"}).raise_for_status()

    with pytest.raises(smtplib.SMTPDataError):
        send(sink, ticket_mail(subject="refused"))
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(sink, ticket_mail(subject="dropped"))
    send(sink, ticket_mail(subject="accepted"))

    assert subjects(api) == ["accepted"]
    assert counters(api) == {"accepted": 1, "refused": 1, "dropped": 1}


def test_dropping_the_connection_after_data_keeps_nothing_and_the_next_message_goes_through(
    sink: SmtpSink, api: httpx.Client
) -> None:
    api.post("/api/faults", json={"kind": "drop", "count": 1}).raise_for_status()

    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(sink, ticket_mail(subject="lost"))
    assert subjects(api) == []
    send(sink, ticket_mail(subject="delivered"))

    assert subjects(api) == ["delivered"]
    assert counters(api) == {"accepted": 1, "refused": 0, "dropped": 1}


def test_dropping_at_rcpt_closes_the_connection_before_any_data(
    sink: SmtpSink, api: httpx.Client
) -> None:
    api.post("/api/faults", json={"kind": "drop", "at": "rcpt"}).raise_for_status()
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as client:
        client.ehlo()
        assert client.mail(SENDER)[0] == 250
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.rcpt(RECIPIENT)
    assert counters(api) == {"accepted": 0, "refused": 0, "dropped": 1}


def test_being_down_refuses_connections_then_the_sink_comes_back_by_itself(
    sink: SmtpSink, api: httpx.Client
) -> None:
    open_session = smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10)
    started = time.monotonic()
    state = api.post("/api/faults", json={"kind": "down", "seconds": 1.5}).json()
    assert state["listening"] is False
    assert state["down_until"] is not None

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sink.smtp_port), timeout=2).close()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        open_session.noop()  # an outage closes the connections it finds too
    open_session.close()

    deadline = time.monotonic() + 10
    while True:
        try:
            send(sink, ticket_mail(subject="after the outage"))
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the sink did not come back"
            time.sleep(0.1)
    assert time.monotonic() - started >= 1.5
    assert subjects(api) == ["after the outage"]
    assert api.get("/api/faults").json() == {"pending": [], "down_until": None, "listening": True}


def test_clearing_faults_drops_pending_ones_and_ends_an_outage_at_once(
    sink: SmtpSink, api: httpx.Client
) -> None:
    api.post("/api/faults", json={"kind": "refuse", "count": 5}).raise_for_status()
    api.post("/api/faults", json={"kind": "down", "seconds": 600}).raise_for_status()

    assert api.delete("/api/faults").status_code == 204
    send(sink, ticket_mail(subject="right away"))
    assert subjects(api) == ["right away"]
    assert counters(api) == {"accepted": 1, "refused": 0, "dropped": 0}


def test_a_fault_body_that_makes_no_sense_is_refused(sink: SmtpSink, api: httpx.Client) -> None:
    assert api.post("/api/faults", json={"kind": "explode"}).status_code == 400
    assert api.post("/api/faults", json={"kind": "refuse", "count": 0}).status_code == 400
    assert api.post("/api/faults", json={"kind": "refuse", "code": 250}).status_code == 400
    assert api.post("/api/faults", json={"kind": "down"}).status_code == 400
    assert api.get("/api/faults").json()["pending"] == []
