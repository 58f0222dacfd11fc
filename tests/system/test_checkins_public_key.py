"""GET /api/v1/checkins/public-key: the JWK set a scanner needs to verify QR codes offline."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from ulid import ULID

from eventhunting.tickets.qr_codes import PREFIX, TicketCode, sign_ticket_code
from eventhunting.tickets.qr_keys import QrKeyRing, key_id_of, private_key_text, public_key_text
from tests.support.servers import running_redis
from tests.support.system import RunningSystem, running_system

pytestmark = pytest.mark.system

CURRENT, PREVIOUS = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def keyed_api(
    tmp_path_factory: pytest.TempPathFactory, mongodb_url: str
) -> Iterator[RunningSystem]:
    """An API that signs with CURRENT and still accepts codes of PREVIOUS, on a Redis of its
    own: its bootstrap admin (same email, another password) must not become the shared
    system's admin."""
    overrides = {
        "EVENTHUNTING_QR_SIGNING_KEY": private_key_text(CURRENT),
        "EVENTHUNTING_QR_PUBLIC_KEYS": public_key_text(PREVIOUS.public_key()),
    }
    with (
        running_redis(tmp_path_factory.mktemp("keyed-redis")) as redis_url,
        running_system(
            redis_url, mongodb_url, f"system_{uuid.uuid4().hex[:8]}", overrides=overrides
        ) as system,
    ):
        yield system


def verify_offline(code: str, jwk_set: dict[str, list[dict[str, str]]]) -> bool:
    """What a scanner does with the published keys: find the key by kid, check the signature."""
    encoded = code.removeprefix(PREFIX)
    payload = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    keys = {key["kid"]: key for key in jwk_set["keys"]}
    key = keys.get(payload[:4].hex())
    if key is None:
        return False
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "="))
    try:
        public.verify(payload[52:], PREFIX.encode() + payload[:52])
    except Exception:
        return False
    return True


async def test_the_public_keys_are_published_without_sign_in_signing_key_first(
    keyed_api: RunningSystem,
) -> None:
    async with httpx.AsyncClient(base_url=keyed_api.base_url, timeout=30) as client:
        response = await client.get("/api/v1/checkins/public-key")
    assert response.status_code == 200
    assert "public" in response.headers["cache-control"]
    assert "max-age=300" in response.headers["cache-control"]
    keys = response.json()["keys"]
    assert [key["kid"] for key in keys] == [
        key_id_of(CURRENT.public_key()).hex(),
        key_id_of(PREVIOUS.public_key()).hex(),
    ]
    assert keys[0] == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": public_key_text(CURRENT.public_key()),
        "kid": key_id_of(CURRENT.public_key()).hex(),
        "use": "sig",
        "alg": "EdDSA",
    }
    assert all(set(key) == {"kty", "crv", "x", "kid", "use", "alg"} for key in keys)  # no "d"


async def test_a_scanner_verifies_current_and_previous_codes_with_the_published_keys(
    keyed_api: RunningSystem,
) -> None:
    async with httpx.AsyncClient(base_url=keyed_api.base_url, timeout=30) as client:
        jwk_set = (await client.get("/api/v1/checkins/public-key")).json()
    ticket = TicketCode(ticket_id=str(ULID()), event_id=str(ULID()), ticket_type_id=str(ULID()))
    assert verify_offline(sign_ticket_code(ticket, QrKeyRing(signing_key=CURRENT)), jwk_set)
    assert verify_offline(sign_ticket_code(ticket, QrKeyRing(signing_key=PREVIOUS)), jwk_set)
    stranger = QrKeyRing(signing_key=Ed25519PrivateKey.generate())
    assert not verify_offline(sign_ticket_code(ticket, stranger), jwk_set)


async def test_an_api_without_qr_keys_publishes_an_empty_set(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/checkins/public-key")
    assert response.status_code == 200
    assert response.json() == {"keys": []}
