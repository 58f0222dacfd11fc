"""The client's address: the connection's peer, or X-Forwarded-For from a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str | None) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR networks; ValueError naming the bad one."""
    if not text:
        return ()
    networks: list[Network] = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network") from None
    return tuple(networks)


# Sent when the connection has no IP peer (a Unix socket): VNPAY needs some address.
UNKNOWN_PEER = "127.0.0.1"


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The client's IP address.

    X-Forwarded-For is believed only when the peer is a trusted proxy, and then read from the
    right: the first address that is not itself a trusted proxy is the client (addresses to
    its left were written by the client and prove nothing).
    """
    address = peer if peer and is_address(peer) else UNKNOWN_PEER
    if forwarded_for is None or not is_trusted(address, proxies):
        return address
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_address(hop):
            return address
        if not is_trusted(hop, proxies):
            return hop
        address = hop
    return address


class ClientAddresses:
    """The client address of requests behind the configured trusted proxies (one per process)."""

    def __init__(self, trusted_proxies: Sequence[Network] = ()) -> None:
        self.trusted_proxies = tuple(trusted_proxies)

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        return client_address(peer, forwarded_for, self.trusted_proxies)
