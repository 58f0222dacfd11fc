"""Ticket QR payloads: key id, ticket, event and ticket type ids, signed with Ed25519."""

# Layout of the 116 bytes behind the `EH1:` prefix (docs/tickets.md has the reasons):
#
#     offset  size  field
#          0     4  key id (first bytes of the signing key's RFC 7638 JWK thumbprint)
#          4    16  ticket id (ULID, 128 bits)
#         20    16  event id (ULID)
#         36    16  ticket type id (ULID)
#         52    64  Ed25519 signature over the ASCII prefix `EH1:` followed by bytes 0..51
#
# The text is the prefix and the RFC 4648 base32 of those bytes without padding: 190
# characters, all in the QR alphanumeric set, so the code fits a version 8 symbol at error
# correction M (base64 would need byte mode and version 9).

from __future__ import annotations

import base64
import binascii

import msgspec
from cryptography.exceptions import InvalidSignature
from ulid import ULID

from eventhunting.domain.errors import DomainError, ErrorKind
from eventhunting.tickets.qr_keys import KEY_ID_BYTES, QrKeyRing

PREFIX = "EH1:"
ULID_BYTES = 16
SIGNATURE_BYTES = 64
SIGNED_BYTES = KEY_ID_BYTES + 3 * ULID_BYTES
PAYLOAD_BYTES = SIGNED_BYTES + SIGNATURE_BYTES
MAX_TEXT_LENGTH = 512
"""Longer input is refused before any decoding: a real code is 190 characters."""


class TicketCode(msgspec.Struct, frozen=True, kw_only=True):
    """What a ticket's QR code says: which ticket, of which event and ticket type."""

    ticket_id: str
    event_id: str
    ticket_type_id: str


class VerifiedTicketCode(TicketCode, frozen=True, kw_only=True):
    """A QR code whose signature checked out under one of our keys (`key_id` in hex)."""

    key_id: str


class InvalidTicketCode(DomainError):
    """A scanned code is not a ticket we signed; `reason` says why, for the door staff."""

    kind = ErrorKind.INVALID
    code = "invalid_ticket"
    title = "Invalid ticket"
    reason = "malformed"

    def __init__(self, detail: str) -> None:
        # Every 422 names the field it refuses (`errors`), as the API promises.
        super().__init__(detail, reason=self.reason, errors=[{"field": "qr", "message": detail}])


class MalformedTicketCode(InvalidTicketCode):
    """Not a ticket code at all: wrong prefix, not base32, or the wrong length."""

    reason = "malformed"


class UnknownTicketKey(InvalidTicketCode):
    """Well-formed, but signed under a key id this system does not (or no longer) accept."""

    reason = "unknown_key"


class ForgedTicketCode(InvalidTicketCode):
    """The signature does not verify: the code was made by someone else or altered."""

    reason = "bad_signature"


def pack_ulid(identifier: str) -> bytes:
    """The 16 bytes of a canonical (upper-case, 26-character) ULID string."""
    try:
        packed = ULID.from_str(identifier).bytes
    except ValueError:
        raise ValueError(f"{identifier!r} is not a ULID") from None
    if str(ULID.from_bytes(packed)) != identifier:
        raise ValueError(f"{identifier!r} is not a canonical ULID (upper-case Crockford base32)")
    return packed


def unpack_ulid(packed: bytes) -> str:
    return str(ULID.from_bytes(packed))


def sign_ticket_code(ticket: TicketCode, ring: QrKeyRing) -> str:
    """The QR text of `ticket`, signed with the ring's signing key."""
    if ring.signing_key is None or ring.signing_key_id is None:
        raise RuntimeError("this key ring has no signing key (EVENTHUNTING_QR_SIGNING_KEY)")
    signed = (
        ring.signing_key_id
        + pack_ulid(ticket.ticket_id)
        + pack_ulid(ticket.event_id)
        + pack_ulid(ticket.ticket_type_id)
    )
    signature = ring.signing_key.sign(PREFIX.encode("ascii") + signed)
    return PREFIX + base64.b32encode(signed + signature).decode("ascii").rstrip("=")


def verify_ticket_code(text: str, ring: QrKeyRing) -> VerifiedTicketCode:
    """The ticket a scanned or typed code names, or an `InvalidTicketCode` saying why not.

    Surrounding white space and lower case (a code typed by hand) are accepted.
    """
    if len(text) > MAX_TEXT_LENGTH:
        raise MalformedTicketCode("The code is too long to be a ticket.")
    normalised = text.strip().upper()
    if not normalised.startswith(PREFIX):
        raise MalformedTicketCode("The code is not an EventHunting ticket.")
    encoded = normalised.removeprefix(PREFIX)
    try:
        payload = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    except (binascii.Error, ValueError):
        raise MalformedTicketCode("The code is damaged: it is not valid base32.") from None
    if len(payload) != PAYLOAD_BYTES:
        raise MalformedTicketCode("The code is damaged: it has the wrong length.")
    signed, signature = payload[:SIGNED_BYTES], payload[SIGNED_BYTES:]
    key_id = signed[:KEY_ID_BYTES]
    public_key = ring.public_key(key_id)
    if public_key is None:
        raise UnknownTicketKey("The code was signed with a key this system does not accept.")
    try:
        public_key.verify(signature, PREFIX.encode("ascii") + signed)
    except InvalidSignature:
        raise ForgedTicketCode("The code's signature is not valid: forged or altered.") from None
    ids = [
        unpack_ulid(signed[start : start + ULID_BYTES])
        for start in range(KEY_ID_BYTES, SIGNED_BYTES, ULID_BYTES)
    ]
    return VerifiedTicketCode(
        ticket_id=ids[0], event_id=ids[1], ticket_type_id=ids[2], key_id=key_id.hex()
    )
