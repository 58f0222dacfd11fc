"""Check-in over HTTP: the public keys with which scanners verify ticket QR codes offline."""

from __future__ import annotations

from functools import lru_cache

from litestar import Controller, get
from litestar.datastructures import CacheControlHeader

from eventhunting.bootstrap import Services
from eventhunting.settings import QrSettings
from eventhunting.tickets.qr_keys import JsonWebKeySet, QrKeyRing, key_ring_of

PUBLIC_KEY_MAX_AGE_SECONDS = 300
"""Scanners may keep the keys this long; a key is published before it signs (docs/tickets.md)."""


@lru_cache(maxsize=4)
def key_ring_for(settings: QrSettings) -> QrKeyRing:
    """The process's verifying ring, read once from its settings."""
    return key_ring_of(settings)


class CheckinController(Controller):
    """`/api/v1/checkins`: verifying tickets at the door."""

    path = "/api/v1/checkins"
    tags = ["check-in"]

    @get(
        "/public-key",
        summary="Public keys that verify ticket QR codes",
        description="An RFC 7517 JWK set of Ed25519 keys (RFC 8037), the signing key first;"
        " `kid` is the key id a QR code carries, in hex. Empty when this API has no QR keys"
        " configured. See docs/tickets.md for the QR layout.",
        cache_control=CacheControlHeader(public=True, max_age=PUBLIC_KEY_MAX_AGE_SECONDS),
    )
    async def public_keys(self, services: Services) -> JsonWebKeySet:
        return key_ring_for(services.settings.qr).jwk_set()
