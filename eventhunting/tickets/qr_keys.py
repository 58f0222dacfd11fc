"""Ed25519 keys of ticket QR codes: the key ring, key ids, key text and the published JWK set."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from eventhunting.settings import PREFIX, QrSettings, SettingsError

KEY_ID_BYTES = 4
"""A key id is the first 4 bytes of the key's RFC 7638 JWK thumbprint: enough to tell apart
the handful of keys a ring holds (the ring refuses two keys with one id), small in a QR."""

RAW_KEY_BYTES = 32
PEM_BEGIN = "-----BEGIN "


class QrKeyError(ValueError):
    """Key text that is not an Ed25519 key in a form we read, or a ring that cannot be built."""


class JsonWebKey(msgspec.Struct, frozen=True, kw_only=True):
    """One Ed25519 public key as an RFC 8037 JWK; `kid` is the key id in hex."""

    kty: str = "OKP"
    crv: str = "Ed25519"
    x: str
    kid: str
    use: str = "sig"
    alg: str = "EdDSA"


class JsonWebKeySet(msgspec.Struct, frozen=True, kw_only=True):
    """The public keys whose ticket QR codes are valid, signing key first."""

    keys: list[JsonWebKey]


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def jwk_thumbprint(key: Ed25519PublicKey) -> bytes:
    """RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace."""
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{base64url(raw_public_key(key))}"}}'
    return hashlib.sha256(canonical.encode("ascii")).digest()


def key_id_of(key: Ed25519PublicKey) -> bytes:
    """The 4-byte id a QR code carries to name the key that signed it."""
    return jwk_thumbprint(key)[:KEY_ID_BYTES]


def _decode_raw_key(text: str, what: str) -> bytes:
    compact = "".join(text.split())
    padded = compact + "=" * (-len(compact) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise QrKeyError(f"{what} is neither PEM nor base64 of the raw 32 bytes") from None
    if len(raw) != RAW_KEY_BYTES:
        raise QrKeyError(f"{what} must be 32 bytes once base64-decoded, not {len(raw)}")
    return raw


def _pem_bytes(text: str) -> bytes:
    # An environment variable often carries a PEM with its line breaks written as `\n`.
    return text.strip().replace("\\n", "\n").encode("ascii")


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) or base64/base64url of its raw 32 bytes."""
    if PEM_BEGIN in text:
        try:
            key = serialization.load_pem_private_key(_pem_bytes(text), password=None)
        except (ValueError, TypeError):
            raise QrKeyError("the private key PEM cannot be read (unencrypted PKCS#8)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise QrKeyError("the private key PEM is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_decode_raw_key(text, "the private key"))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or base64 of its raw 32 bytes."""
    if PEM_BEGIN in text:
        try:
            key = serialization.load_pem_public_key(_pem_bytes(text))
        except (ValueError, TypeError):
            raise QrKeyError("a public key PEM cannot be read") from None
        if not isinstance(key, Ed25519PublicKey):
            raise QrKeyError("a public key PEM is not an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(_decode_raw_key(text, "a public key"))


def parse_public_keys(text: str) -> list[Ed25519PublicKey]:
    """Comma-separated public keys (PEM or base64 raw); blanks between commas are ignored."""
    return [parse_public_key(part) for part in text.split(",") if part.strip()]


def private_key_text(key: Ed25519PrivateKey) -> str:
    """The one-line form `EVENTHUNTING_QR_SIGNING_KEY` accepts: base64url of the raw bytes."""
    return base64url(
        key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )


def public_key_text(key: Ed25519PublicKey) -> str:
    """The one-line form `EVENTHUNTING_QR_PUBLIC_KEYS` accepts: base64url of the raw bytes."""
    return base64url(raw_public_key(key))


class QrKeyRing:
    """The key that signs new QR codes (if this process signs) and every key that verifies."""

    def __init__(
        self,
        *,
        signing_key: Ed25519PrivateKey | None = None,
        public_keys: Iterable[Ed25519PublicKey] = (),
    ) -> None:
        self.signing_key = signing_key
        self.signing_key_id: bytes | None = None
        self._public_keys: dict[bytes, Ed25519PublicKey] = {}
        if signing_key is not None:
            public = signing_key.public_key()
            self.signing_key_id = key_id_of(public)
            self._add(public)
        for key in public_keys:
            self._add(key)

    def _add(self, key: Ed25519PublicKey) -> None:
        key_id = key_id_of(key)
        known = self._public_keys.get(key_id)
        if known is None:
            self._public_keys[key_id] = key
        elif raw_public_key(known) != raw_public_key(key):
            raise QrKeyError(f"two different keys share the key id {key_id.hex()}; drop one")

    def public_key(self, key_id: bytes) -> Ed25519PublicKey | None:
        """The key that verifies codes signed under `key_id`, or None when it is not ours."""
        return self._public_keys.get(key_id)

    @property
    def key_ids(self) -> list[bytes]:
        """Every key id the ring accepts, the signing key's first."""
        return list(self._public_keys)

    def jwk_set(self) -> JsonWebKeySet:
        """The public keys as a JWK set, for scanners that verify offline."""
        return JsonWebKeySet(
            keys=[
                JsonWebKey(x=base64url(raw_public_key(key)), kid=key_id.hex())
                for key_id, key in self._public_keys.items()
            ]
        )


def load_or_create_dev_signing_key(path: Path) -> str:
    """The signing key kept at `path` for `eventhunting dev`, created on first use.

    Keeping it under the data directory means tickets mailed in an earlier dev run still
    verify after a restart. The file is readable by its owner only.
    """
    if path.is_file():
        text = path.read_text(encoding="ascii").strip()
        parse_private_key(text)
        return text
    text = private_key_text(Ed25519PrivateKey.generate())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(text + "\n")
    return text


def key_ring_of(settings: QrSettings) -> QrKeyRing:
    """The ring the settings describe: the signing key (if given) and the other public keys."""
    return QrKeyRing(
        signing_key=None
        if settings.signing_key is None
        else parse_private_key(settings.signing_key),
        public_keys=() if settings.public_keys is None else parse_public_keys(settings.public_keys),
    )


def signing_key_ring(settings: QrSettings) -> QrKeyRing:
    """The ring of a process that issues tickets; without a signing key it must not start."""
    if settings.signing_key is None:
        raise SettingsError(
            f"{PREFIX}QR_SIGNING_KEY is required: the Ed25519 private key that signs ticket QR"
            " codes (PEM, or base64 of the raw 32 bytes)"
        )
    return key_ring_of(settings)


def verifying_key_ring(settings: QrSettings) -> QrKeyRing:
    """The ring of a process that checks tickets in; it needs at least one public key."""
    ring = key_ring_of(settings)
    if not ring.key_ids:
        raise SettingsError(
            f"{PREFIX}QR_SIGNING_KEY or {PREFIX}QR_PUBLIC_KEYS is required: the keys that"
            " verify ticket QR codes"
        )
    return ring
