"""Address allow-lists from settings (TBANK_ALLOWED_NETWORKS, METRICS_ALLOWED_NETWORKS): parsed
the same way everywhere, and an address that is not an IP never matches."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks_parse(entries: Iterable[str], *, setting: str, example: str) -> list[Network]:
    """`entries` as networks; ValueError naming the setting and the bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{setting} has {entry!r}, which is not a network: use CIDR such as {example}.") from None
    return networks


def address_in(address: str | None, networks: list[Network]) -> bool:
    """Whether `address` is an IP address inside one of `networks` (garbage never is)."""
    try:
        parsed = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return False
    return any(parsed in network for network in networks)
