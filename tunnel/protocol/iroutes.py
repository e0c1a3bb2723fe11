"""`iroute`: networks behind a client, found by longest prefix without a walk per packet.

A packet from the TUN whose destination is no client's own address may be for a network a
client announced with `iroute` (client-config-dir / client-connect / client-auth). The routes
are kept in one dict per prefix length present, keyed by the network's address as an int, so a
lookup costs one mask and one dict probe per distinct prefix length (typically one or two),
longest first, whatever the number of clients or routes.

Two clients claiming the same network: the first one keeps it while it is connected, and the
next claimant takes over when it leaves (the order the server had before this table).
"""

from __future__ import annotations

import ipaddress
from typing import Generic, TypeVar

__all__ = ["IrouteTable"]

T = TypeVar("T")


class IrouteTable(Generic[T]):
    """IPv4 network -> owner (the server's peer entry), longest prefix first."""

    def __init__(self) -> None:
        # (mask, {network: owner}) per prefix length in use, longest first: the lookup's list.
        self._levels: list[tuple[int, dict[int, T]]] = []
        self._by_length: dict[int, dict[int, T]] = {}
        # Every claim, in order, for a network two owners announced (rare: usually one).
        self._claims: dict[tuple[int, int], list[T]] = {}

    def __bool__(self) -> bool:
        return bool(self._levels)

    def __len__(self) -> int:
        return len(self._claims)

    def lookup(self, destination: int) -> T | None:
        """The owner of the longest network that holds `destination` (an IPv4 as int)."""
        for mask, networks in self._levels:
            owner = networks.get(destination & mask)
            if owner is not None:
                return owner
        return None

    def add(self, network: ipaddress.IPv4Network, owner: T) -> None:
        key = (network.prefixlen, int(network.network_address))
        claims = self._claims.setdefault(key, [])
        if owner in claims:
            return
        claims.append(owner)
        if len(claims) == 1:
            self._level(network.prefixlen)[key[1]] = owner

    def remove(self, network: ipaddress.IPv4Network, owner: T) -> None:
        key = (network.prefixlen, int(network.network_address))
        claims = self._claims.get(key)
        if claims is None or owner not in claims:
            return
        claims.remove(owner)
        networks = self._by_length[network.prefixlen]
        if claims:
            networks[key[1]] = claims[0]
            return
        del self._claims[key]
        del networks[key[1]]
        if not networks:
            del self._by_length[network.prefixlen]
            self._rebuild()

    def _level(self, prefixlen: int) -> dict[int, T]:
        networks = self._by_length.get(prefixlen)
        if networks is None:
            networks = self._by_length[prefixlen] = {}
            self._rebuild()
        return networks

    def _rebuild(self) -> None:
        self._levels = [
            ((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF, self._by_length[length])
            for length in sorted(self._by_length, reverse=True)
        ]
