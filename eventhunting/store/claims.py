"""Names of the write-side unique claims (`{p<k>}:claim:<name>`)."""

from __future__ import annotations


def email_claim(normalised_email: str) -> str:
    """The claim that makes one email belong to exactly one account, in the email's partition."""
    return f"email:{normalised_email}"
