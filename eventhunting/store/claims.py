"""Names of the write-side unique claims (`{p<k>}:claim:<name>`)."""

from __future__ import annotations


def email_claim(normalised_email: str) -> str:
    """The claim that makes one email belong to exactly one account, in the email's partition."""
    return f"email:{normalised_email}"


def ticket_claim(ticket_id: str) -> str:
    """The claim naming a ticket's order (owner: the order id), in the order's partition."""
    return f"ticket:{ticket_id}"


def ticket_code_claim(event_id: str, code: str) -> str:
    """The claim making a door code unique within an event (owner: the ticket id)."""
    return f"ticket-code:{event_id}:{code}"
