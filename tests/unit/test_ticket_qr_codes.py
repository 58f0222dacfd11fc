"""Ticket QR codes: signed, compact, verifiable after key rotation, and readable by a scanner."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image, ImageDraw
from ulid import ULID

from eventhunting.tickets.qr_codes import (
    PREFIX,
    ForgedTicketCode,
    MalformedTicketCode,
    TicketCode,
    UnknownTicketKey,
    VerifiedTicketCode,
    sign_ticket_code,
    verify_ticket_code,
)
from eventhunting.tickets.qr_images import qr_png, qr_svg, qr_version
from eventhunting.tickets.qr_keys import QrKeyRing, key_id_of

QR_ALPHANUMERIC = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def new_ticket() -> TicketCode:
    return TicketCode(ticket_id=str(ULID()), event_id=str(ULID()), ticket_type_id=str(ULID()))


def payload_of(code: str) -> bytearray:
    encoded = code.removeprefix(PREFIX)
    return bytearray(base64.b32decode(encoded + "=" * (-len(encoded) % 8)))


def code_of(payload: bytes) -> str:
    return PREFIX + base64.b32encode(bytes(payload)).decode("ascii").rstrip("=")


@pytest.fixture
def ring() -> QrKeyRing:
    return QrKeyRing(signing_key=Ed25519PrivateKey.generate())


def test_a_signed_code_verifies_to_the_ticket_it_names(ring: QrKeyRing) -> None:
    ticket = new_ticket()
    verified = verify_ticket_code(sign_ticket_code(ticket, ring), ring)
    assert ring.signing_key_id is not None
    assert verified == VerifiedTicketCode(
        ticket_id=ticket.ticket_id,
        event_id=ticket.event_id,
        ticket_type_id=ticket.ticket_type_id,
        key_id=ring.signing_key_id.hex(),
    )


def test_the_code_carries_only_ids_and_the_key_id(ring: QrKeyRing) -> None:
    ticket = new_ticket()
    payload = payload_of(sign_ticket_code(ticket, ring))
    assert ring.signing_key_id is not None
    assert payload[:4] == ring.signing_key_id
    assert payload[4:20] == ULID.from_str(ticket.ticket_id).bytes
    assert payload[20:36] == ULID.from_str(ticket.event_id).bytes
    assert payload[36:52] == ULID.from_str(ticket.ticket_type_id).bytes
    assert len(payload) == 52 + 64


@pytest.mark.parametrize("position", [0, 5, 25, 40, 51, 52, 80, 115])
def test_a_code_with_any_byte_altered_is_rejected(ring: QrKeyRing, position: int) -> None:
    payload = payload_of(sign_ticket_code(new_ticket(), ring))
    payload[position] ^= 0x01
    expected = UnknownTicketKey if position < 4 else ForgedTicketCode
    with pytest.raises(expected):
        verify_ticket_code(code_of(payload), ring)


def test_a_code_signed_by_another_key_is_rejected_as_unknown_key(ring: QrKeyRing) -> None:
    stranger = QrKeyRing(signing_key=Ed25519PrivateKey.generate())
    with pytest.raises(UnknownTicketKey) as raised:
        verify_ticket_code(sign_ticket_code(new_ticket(), stranger), ring)
    assert raised.value.code == "invalid_ticket"
    assert raised.value.extra["reason"] == "unknown_key"


def test_a_code_signed_by_another_key_under_our_key_id_is_rejected_as_forged(
    ring: QrKeyRing,
) -> None:
    forger = Ed25519PrivateKey.generate()
    assert ring.signing_key_id is not None
    ticket = new_ticket()
    signed = (
        ring.signing_key_id
        + ULID.from_str(ticket.ticket_id).bytes
        + ULID.from_str(ticket.event_id).bytes
        + ULID.from_str(ticket.ticket_type_id).bytes
    )
    forged = code_of(signed + forger.sign(PREFIX.encode() + signed))
    with pytest.raises(ForgedTicketCode) as raised:
        verify_ticket_code(forged, ring)
    assert raised.value.extra["reason"] == "bad_signature"


def test_after_rotation_old_codes_verify_while_the_old_public_key_is_listed() -> None:
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ticket = new_ticket()
    old_code = sign_ticket_code(ticket, QrKeyRing(signing_key=old_key))
    rotated = QrKeyRing(signing_key=new_key, public_keys=[old_key.public_key()])
    assert verify_ticket_code(old_code, rotated).ticket_id == ticket.ticket_id
    new_code = sign_ticket_code(ticket, rotated)
    assert payload_of(new_code)[:4] == key_id_of(new_key.public_key())
    assert verify_ticket_code(new_code, rotated).key_id == key_id_of(new_key.public_key()).hex()
    retired = QrKeyRing(signing_key=new_key)
    with pytest.raises(UnknownTicketKey):
        verify_ticket_code(old_code, retired)


def test_a_process_with_public_keys_only_verifies_but_cannot_sign(ring: QrKeyRing) -> None:
    assert ring.signing_key is not None
    verifier = QrKeyRing(public_keys=[ring.signing_key.public_key()])
    ticket = new_ticket()
    assert verify_ticket_code(sign_ticket_code(ticket, ring), verifier).ticket_id == (
        ticket.ticket_id
    )
    with pytest.raises(RuntimeError, match="no signing key"):
        sign_ticket_code(ticket, verifier)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "EH2:" + "A" * 186,
        PREFIX + "A" * 185,  # one character short
        PREFIX + "A" * 188,  # too long for the layout
        PREFIX + "1" * 186,  # 1 is not a base32 digit
        PREFIX + "A" * 1000,
    ],
)
def test_text_that_is_no_ticket_code_is_rejected_as_malformed(ring: QrKeyRing, text: str) -> None:
    with pytest.raises(MalformedTicketCode) as raised:
        verify_ticket_code(text, ring)
    assert raised.value.extra["reason"] == "malformed"


def test_a_code_typed_in_lower_case_with_spaces_around_verifies(ring: QrKeyRing) -> None:
    ticket = new_ticket()
    typed = "  " + sign_ticket_code(ticket, ring).lower() + "\n"
    assert verify_ticket_code(typed, ring).ticket_id == ticket.ticket_id


def test_ids_that_are_not_canonical_ulids_cannot_be_signed(ring: QrKeyRing) -> None:
    ticket = new_ticket()
    for bad in (ticket.ticket_id.lower(), "not-a-ulid", "8" + ticket.ticket_id[1:]):
        with pytest.raises(ValueError, match="ULID"):
            sign_ticket_code(
                TicketCode(ticket_id=bad, event_id=ticket.event_id, ticket_type_id=bad), ring
            )


def test_every_code_fits_a_version_8_symbol_at_error_correction_m(ring: QrKeyRing) -> None:
    for _ in range(20):
        code = sign_ticket_code(new_ticket(), ring)
        assert len(code) == 190
        assert set(code) <= QR_ALPHANUMERIC
        assert qr_version(code) <= 8


def test_the_png_decodes_back_to_the_code_with_a_real_decoder(ring: QrKeyRing) -> None:
    code = sign_ticket_code(new_ticket(), ring)
    image = Image.open(io.BytesIO(qr_png(code)))
    assert image.format == "PNG"
    decoded = zxingcpp.read_barcodes(image)
    assert [result.text for result in decoded] == [code]
    assert decoded[0].format == zxingcpp.BarcodeFormat.QRCode
    assert decoded[0].symbology_identifier == "]Q1"


def test_the_svg_decodes_back_to_the_code_once_drawn(ring: QrKeyRing) -> None:
    code = sign_ticket_code(new_ticket(), ring)
    root = ET.fromstring(qr_svg(code))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    paths = root.findall("{http://www.w3.org/2000/svg}path")
    assert len(paths) == 1
    # version 8: 49 modules and a 4-module quiet zone on each side, 0.8 mm each
    assert root.attrib["viewBox"] == "0 0 45.6 45.6"
    # Draw the path's squares (`Mx,yHx2Vy2Hxz`, one per dark module) 10 pixels per mm.
    image = Image.new("L", (456, 456), 255)
    draw = ImageDraw.Draw(image)
    squares = re.findall(r"M([\d.]+),([\d.]+)H([\d.]+)V([\d.]+)H[\d.]+z", paths[0].attrib["d"])
    assert squares
    for left, top, right, bottom in squares:
        box = [round(float(value) * 10) for value in (left, top, right, bottom)]
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=0)
    assert [result.text for result in zxingcpp.read_barcodes(image)] == [code]
