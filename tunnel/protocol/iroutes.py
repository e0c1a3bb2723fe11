"""`iroute`: networks behind a client, found by longest prefix without a walk per packet.

A packet from the TUN whose destination is no client's own address may be for a network a
client announced with `iroute` (client-config-dir / client-connect / client-auth). The routes
are kept in one dict per prefix length present, keyed by the network's address as an int, so a
lookup costs one mask and one dict probe per distinct prefix length (typically one or two),
longest first, whatever the number of clients or routes.

Two clients claiming the same network: the newer claimant takes it over, and when the owner
leaves the network has no owner until a client claims it again; an earlier claimant that leaves
changes nothing. That is stock's: multi_learn_addr (multi.c) replaces an existing route's owner
("learn-address update") and frees the old route, and iroutes are learned only when a client
connects (multi_add_iroutes), so the earlier claimant never gets it back.
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
        self._count = 0

    def __bool__(self) -> bool:
        return bool(self._levels)

    def __len__(self) -> int:
        return self._count

    def lookup(self, destination: int) -> T | None:
        """The owner of the longest network that holds `destination` (an IPv4 as int)."""
        for mask, networks in self._levels:
            owner = networks.get(destination & mask)
            if owner is not None:
                return owner
        return None

    def add(self, network: ipaddress.IPv4Network, owner: T) -> None:
        """`owner` owns `network` from now on, whoever owned it before (stock: the newest)."""
        networks = self._level(network.prefixlen)
        key = int(network.network_address)
        if key not in networks:
            self._count += 1
        networks[key] = owner

    def remove(self, network: ipaddress.IPv4Network, owner: T) -> None:
        """`network` has no owner any more if `owner` still owns it; otherwise nothing."""
        networks = self._by_length.get(network.prefixlen)
        key = int(network.network_address)
        if networks is None or networks.get(key) is not owner:
            return
        del networks[key]
        self._count -= 1
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
