"""QR signing keys: the forms they are read from, key ids, the JWK set, settings and dev keys."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from ulid import ULID

from eventhunting.settings import SettingsError, load_settings
from eventhunting.tickets.qr_codes import TicketCode, sign_ticket_code, verify_ticket_code
from eventhunting.tickets.qr_keys import (
    QrKeyError,
    QrKeyRing,
    jwk_thumbprint,
    key_id_of,
    load_or_create_dev_signing_key,
    parse_private_key,
    parse_public_key,
    private_key_text,
    public_key_text,
    raw_public_key,
    signing_key_ring,
    verifying_key_ring,
)

VALID = {
    "EVENTHUNTING_REDIS_URL": "redis://127.0.0.1:6390/0",
    "EVENTHUNTING_MONGODB_URL": "mongodb://127.0.0.1:27017/tickets?replicaSet=rs0",
    "EVENTHUNTING_JWT_SECRET": "x" * 40,
}

# RFC 8037 appendix A.1/A.3: an Ed25519 key and its RFC 7638 thumbprint.
RFC8037_PRIVATE_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_PUBLIC_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def unpadded_b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def same_key(left: Ed25519PublicKey, right: Ed25519PublicKey) -> bool:
    return raw_public_key(left) == raw_public_key(right)


def test_key_ids_come_from_the_rfc_7638_thumbprint_of_the_rfc_8037_example_key() -> None:
    key = parse_private_key(RFC8037_PRIVATE_D)
    assert public_key_text(key.public_key()) == RFC8037_PUBLIC_X
    assert unpadded_b64url(jwk_thumbprint(key.public_key())) == RFC8037_THUMBPRINT
    assert key_id_of(key.public_key()) == base64.urlsafe_b64decode(RFC8037_THUMBPRINT + "=")[:4]


def test_a_private_key_reads_from_pem_base64_base64url_and_escaped_pem() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    raw = base64.urlsafe_b64decode(private_key_text(key) + "=")
    forms = [
        pem,
        pem.replace("\n", "\\n"),
        base64.b64encode(raw).decode(),
        private_key_text(key),
        f"  {private_key_text(key)}\n",
    ]
    for text in forms:
        assert same_key(parse_private_key(text).public_key(), key.public_key())


def test_a_public_key_reads_from_pem_and_base64() -> None:
    public = Ed25519PrivateKey.generate().public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    for text in (pem, public_key_text(public), base64.b64encode(raw_public_key(public)).decode()):
        assert same_key(parse_public_key(text), public)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64 at all!", "neither PEM nor base64"),
        (base64.b64encode(b"x" * 31).decode(), "32 bytes"),
        (
            generate_private_key(SECP256R1())
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode(),
            "not an Ed25519 key",
        ),
        ("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----", "cannot be read"),
    ],
)
def test_text_that_is_no_ed25519_private_key_is_refused(text: str, message: str) -> None:
    with pytest.raises(QrKeyError, match=message):
        parse_private_key(text)


def test_the_jwk_set_lists_the_signing_key_first_then_the_older_keys() -> None:
    current, older = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ring = QrKeyRing(signing_key=current, public_keys=[older.public_key(), current.public_key()])
    keys = ring.jwk_set().keys
    assert [key.kid for key in keys] == [
        key_id_of(current.public_key()).hex(),
        key_id_of(older.public_key()).hex(),
    ]
    assert keys[0].x == public_key_text(current.public_key())
    assert {(key.kty, key.crv, key.use, key.alg) for key in keys} == {
        ("OKP", "Ed25519", "sig", "EdDSA")
    }


def test_settings_build_a_ring_that_verifies_codes_of_the_previous_key() -> None:
    previous, current = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    other = Ed25519PrivateKey.generate()
    settings = load_settings(
        {
            **VALID,
            "EVENTHUNTING_QR_SIGNING_KEY": private_key_text(current),
            "EVENTHUNTING_QR_PUBLIC_KEYS": (
                f"{public_key_text(previous.public_key())}, {public_key_text(other.public_key())}"
            ),
        },
        dotenv=None,
    )
    ticket = TicketCode(ticket_id=str(ULID()), event_id=str(ULID()), ticket_type_id=str(ULID()))
    old_code = sign_ticket_code(ticket, QrKeyRing(signing_key=previous))
    ring = signing_key_ring(settings.qr)
    assert ring.signing_key_id == key_id_of(current.public_key())
    assert verify_ticket_code(old_code, ring).ticket_id == ticket.ticket_id
    assert len(verifying_key_ring(settings.qr).key_ids) == 3


def test_a_signing_process_without_a_key_gets_one_line_naming_the_variable() -> None:
    settings = load_settings(VALID, dotenv=None)
    with pytest.raises(SettingsError) as raised:
        signing_key_ring(settings.qr)
    assert str(raised.value).startswith("EVENTHUNTING_QR_SIGNING_KEY is required")
    assert "\n" not in str(raised.value)
    with pytest.raises(SettingsError, match=r"^EVENTHUNTING_QR_SIGNING_KEY or"):
        verifying_key_ring(settings.qr)


def test_a_verifying_process_needs_only_public_keys() -> None:
    key = Ed25519PrivateKey.generate()
    settings = load_settings(
        {**VALID, "EVENTHUNTING_QR_PUBLIC_KEYS": public_key_text(key.public_key())}, dotenv=None
    )
    ring = verifying_key_ring(settings.qr)
    assert ring.signing_key is None
    assert ring.key_ids == [key_id_of(key.public_key())]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTHUNTING_QR_SIGNING_KEY", "too-short"),
        ("EVENTHUNTING_QR_PUBLIC_KEYS", "AAAA,BBBB"),
    ],
)
def test_a_bad_key_setting_stops_loading_with_one_line_naming_it(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({**VALID, variable: value}, dotenv=None)
    assert str(raised.value).startswith(f"{variable} is invalid")
    assert "\n" not in str(raised.value)
    assert value not in str(raised.value)


def test_the_dev_signing_key_is_created_once_private_to_its_owner_and_reused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "qr-signing-key"
    first = load_or_create_dev_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_dev_signing_key(path) == first
    parse_private_key(first)
