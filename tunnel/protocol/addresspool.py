"""The server's client addresses (OpenVPN's pool.c), IPv4 or IPv6.

Hand-out order as stock's `ifconfig_pool_find`: a returning common name gets the address it had
last if that is free; otherwise never-used addresses first, then the one released longest ago.
With `duplicate-cn` stock takes the lowest free address instead, whatever the name had before
(several clients share one name, so a name's history says nothing about who comes back).
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import deque
from typing import Generic, TypeVar

__all__ = ["AddressPool"]

IP = TypeVar("IP", ipaddress.IPv4Address, ipaddress.IPv6Address)


class AddressPool(Generic[IP]):
    """Client addresses: `server`/`ifconfig-pool` (IPv4), `server-ipv6` (IPv6).

    Free addresses wait in a queue (handed out from the front, released to the back) and in a
    set, so that asking whether one is free, which every returning client does, costs the
    same for a pool of 65534 as for 10 (a membership test on the queue walked all of it: a
    /16 pool spent ~10 ms per connecting client). An address taken out of the middle leaves
    its queue entry behind as stale, skipped when it reaches the front.

    `duplicate_cn=True` (stock's `pool->duplicate_cn`): the lowest free address, from a heap
    whose entries are checked against the free set when they reach the top.
    """

    def __init__(self, first: IP, last: IP, step: int = 1, *, duplicate_cn: bool = False) -> None:
        # step 4 from base+2: one address per /30, as topology net30 hands them out.
        if int(last) < int(first):
            raise ValueError(f"empty address pool {first}..{last}")
        self._kind: type[IP] = type(first)
        self.duplicate_cn = duplicate_cn
        addresses = range(int(first), int(last) + 1, step)
        self._free: set[int] = set(addresses)
        self._queue: deque[int] = deque() if duplicate_cn else deque(addresses)
        self._stale: dict[int, int] = {}  # address -> queue entries of it to skip
        # duplicate-cn: a sorted list is a valid heap; entries no longer free are skipped.
        self._lowest: list[int] = list(addresses) if duplicate_cn else []
        self.size = len(addresses)
        self._last_of: dict[str, IP] = {}

    def _take(self, address: int) -> None:
        """Out of the free set; its queue entry goes stale (duplicate-cn keeps no queue)."""
        self._free.discard(address)
        if not self.duplicate_cn:
            self._stale[address] = self._stale.get(address, 0) + 1

    def _pop(self) -> int | None:
        queue, stale = self._queue, self._stale
        while queue:
            address = queue.popleft()
            skip = stale.get(address)
            if skip:
                if skip == 1:
                    del stale[address]
                else:
                    stale[address] = skip - 1
                continue
            self._free.discard(address)
            return address
        return None

    def _lowest_free(self) -> int | None:
        heap, free = self._lowest, self._free
        while heap and heap[0] not in free:
            heapq.heappop(heap)  # taken meanwhile (or a second entry of one address)
        return heap[0] if heap else None

    def _previous(self, common_name: str | None) -> IP | None:
        if self.duplicate_cn or not common_name:
            return None
        previous = self._last_of.get(common_name)
        return previous if previous is not None and int(previous) in self._free else None

    def allocate(self, common_name: str | None = None) -> IP | None:
        """A free address; a client that comes back gets its previous one if it is free, so
        its open connections survive a reconnect (pool.c: ifconfig_pool_acquire by CN)."""
        previous = self._previous(common_name)
        if previous is not None:
            self._take(int(previous))
            return previous
        if self.duplicate_cn:
            number = self._lowest_free()
            if number is not None:
                heapq.heappop(self._lowest)
                self._take(number)
        else:
            number = self._pop()
        if number is None:
            return None
        address = self._kind(number)
        if common_name:
            self._last_of[common_name] = address  # stock records it in both modes (persist)
        return address

    def release(self, address: IP) -> None:
        # Released addresses go to the back, so a CN's previous address stays free longest.
        number = int(address)
        self._free.add(number)
        if self.duplicate_cn:
            heapq.heappush(self._lowest, number)
        else:
            self._queue.append(number)

    def reserve(self, common_name: str, address: IP) -> bool:
        """Remember `address` as `common_name`'s (ifconfig-pool-persist): it goes to that CN
        when it comes back and to others only after every never-used address. False when the
        address is not one of the pool's free ones."""
        number = int(address)
        if number not in self._free or common_name in self._last_of:
            return False
        self._take(number)  # to the back of the queue, still free
        self.release(address)
        self._last_of[common_name] = address
        return True

    def peek(self, common_name: str | None = None) -> IP | None:
        """What `allocate(common_name)` would hand out now, without taking it."""
        previous = self._previous(common_name)
        if previous is not None:
            return previous
        if self.duplicate_cn:
            lowest = self._lowest_free()
            return self._kind(lowest) if lowest is not None else None
        queue, stale = self._queue, self._stale
        while queue:  # stale entries at the front go now: they would be skipped anyway
            address = queue[0]
            skip = stale.get(address)
            if not skip:
                return self._kind(address)
            queue.popleft()
            if skip == 1:
                del stale[address]
            else:
                stale[address] = skip - 1
        return None

    def assignments(self) -> dict[str, IP]:
        """CN -> the address it had last, in the order they were handed out."""
        return dict(self._last_of)
