"""The server's table of client instances (stock's multi_instance hash tables in one place).

One `PeerEntry` per session the server keeps, indexed by every key the server looks it up by:
the link address (control packets, P_DATA_V1), the peer-id (P_DATA_V2), the virtual IPv4 and
IPv6 addresses and the `iroute` networks (packets from the TUN), the common name (without
`duplicate-cn` one session per name). `add` and `remove` are the only ways in and out, and
`assign` / `move` / `set_name` the only changes, so the maps, the free peer-ids and the address
pools never disagree: everything an entry holds is given back by its `remove`.

The maps are attributes (`by_addr`, `by_id`, `by_vip`, `by_vip6`, `iroutes`) because the
server's per-packet path reads them directly; only this module writes them. Everyone else uses
the queries (`at`, `get`, `of`, iteration).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tunnel.protocol.addresspool import AddressPool
from tunnel.protocol.clientconfig import ClientConfig
from tunnel.protocol.errors import HandshakeError
from tunnel.protocol.iroutes import IrouteTable
from tunnel.protocol.session import Session

__all__ = ["PeerEntry", "PeerTable"]

Address = tuple[str, int]


@dataclass(eq=False, slots=True)
class PeerEntry:
    """One client instance: its session and what the server's maps know it by. Per-connection
    state of the server (beyond the protocol session) belongs here."""

    session: Session
    peer_id: int
    vip: ipaddress.IPv4Address | None = None  # assigned at push time
    vip_pushed: bool = False  # from ifconfig-push: not the pool's to take back
    vip6: ipaddress.IPv6Address | None = None
    iroutes: tuple[ipaddress.IPv4Network, ...] = ()
    common_name: str | None = None  # the name it holds in the table (without duplicate-cn)
    auth_config: ClientConfig | None = None  # a management client-auth body, merged at push
    # The source addresses its packets must carry, in the form the packet check compares.
    vip_int: int = -1
    vip6_packed: bytes = b""
    # The I/O lane's records of its last decisions for this client (tunnel/io/lane.py,
    # tunnel/_lane.c), opaque here: they die with the entry.
    lane_plan: tuple[object, ...] | None = None  # sealing for it
    lane_open_plan: tuple[object, ...] | None = None  # opening its datagrams

    @property
    def address(self) -> Address:
        """Where the client is now (it may float)."""
        return self.session.remote_addr


class PeerTable:
    def __init__(
        self,
        max_clients: int,
        pool: AddressPool[ipaddress.IPv4Address],
        pool6: AddressPool[ipaddress.IPv6Address] | None = None,
        *, peer_ids: tuple[int, int] = (0, 1),
    ) -> None:
        self.pool = pool
        self.pool6 = pool6
        self.by_addr: dict[Address, PeerEntry] = {}
        # The peer-ids: first, first + step, ... (a worker of a multi-worker server hands out
        # only those of its index), max_clients of them.
        first, step = peer_ids
        ids = range(first, first + step * max_clients, step)
        self.by_id: list[PeerEntry | None] = [None] * (ids[-1] + 1 if ids else 0)
        self.by_vip: dict[int, PeerEntry] = {}
        self.by_vip6: dict[bytes, PeerEntry] = {}
        self.iroutes: IrouteTable[PeerEntry] = IrouteTable()
        self._by_name: dict[str, PeerEntry] = {}
        # Freed ids go to the back: an id is reused as late as possible, so an event that
        # names one is about the session that had it, not a newer one.
        self._free_ids: deque[int] = deque(ids)

    # -- queries ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.by_addr)

    def __iter__(self) -> Iterator[PeerEntry]:
        return iter(list(self.by_addr.values()))

    def at(self, addr: Address) -> PeerEntry | None:
        return self.by_addr.get(addr)

    def get(self, peer_id: int | None) -> PeerEntry | None:
        if peer_id is None or not 0 <= peer_id < len(self.by_id):
            return None
        return self.by_id[peer_id]

    def of(self, session: Session) -> PeerEntry | None:
        """The entry of a session the server keeps (None once it was removed)."""
        entry = self.get(session.peer_id)
        return entry if entry is not None and entry.session is session else None

    def named(self, common_name: str) -> PeerEntry | None:
        """The one entry holding `common_name` (set_name), if any."""
        return self._by_name.get(common_name)

    @property
    def has_room(self) -> bool:
        return bool(self._free_ids)

    # -- changes ----------------------------------------------------------------------------

    def add(self, addr: Address, make_session: Callable[[int], Session]) -> PeerEntry | None:
        """A new entry at `addr` with the next free peer-id (None when there is none):
        `make_session(peer_id)` builds its session."""
        if not self._free_ids:
            return None
        peer_id = self._free_ids.popleft()
        try:
            session = make_session(peer_id)
        except BaseException:
            self._free_ids.appendleft(peer_id)
            raise
        entry = PeerEntry(session, peer_id)
        self.by_addr[addr] = entry
        self.by_id[peer_id] = entry
        return entry

    def move(self, entry: PeerEntry, addr: Address) -> None:
        """The client floated to `addr` (after its packet from there authenticated)."""
        old = entry.session.remote_addr
        if self.by_addr.get(old) is entry:
            del self.by_addr[old]
        entry.session.remote_addr = addr
        self.by_addr[addr] = entry

    def set_name(self, entry: PeerEntry, common_name: str) -> None:
        """`entry` is the one session of `common_name` from now on (no duplicate-cn)."""
        self._by_name[common_name] = entry
        entry.common_name = common_name

    def assign(self, entry: PeerEntry, ifconfig_push: ipaddress.IPv4Address | None = None,
               iroutes: tuple[ipaddress.IPv4Network, ...] = ()) -> ipaddress.IPv4Address:
        """The client's addresses: `ifconfig_push` or one from the pool (by its common name),
        one from the IPv6 pool if there is one, and its iroutes. HandshakeError when there is
        no address for it (what it was given so far goes back with `remove`)."""
        cn = entry.session.peer_common_name
        if ifconfig_push is not None:
            holder = self.by_vip.get(int(ifconfig_push))
            if holder is not None and holder is not entry:
                raise HandshakeError(f"ifconfig-push {ifconfig_push}: the address is in use")
            vip = ifconfig_push
            entry.vip_pushed = True
        else:
            allocated = self.pool.allocate(cn)
            if allocated is None:
                raise HandshakeError("no free address in the server's pool")
            vip = allocated
        entry.vip = vip
        entry.vip_int = int(vip)
        self.by_vip[entry.vip_int] = entry
        entry.iroutes = iroutes
        for network in iroutes:
            self.iroutes.add(network, entry)
        if self.pool6 is not None:
            vip6 = self.pool6.allocate(cn)
            if vip6 is None:
                raise HandshakeError("no free address in the server's IPv6 pool")
            entry.vip6 = vip6
            entry.vip6_packed = vip6.packed
            self.by_vip6[entry.vip6_packed] = entry
        return vip

    def remove(self, entry: PeerEntry) -> None:
        """Out of every map; its peer-id and its pool addresses are free again."""
        if self.by_id[entry.peer_id] is not entry:
            return  # removed already
        self.by_id[entry.peer_id] = None
        self._free_ids.append(entry.peer_id)
        addr = entry.session.remote_addr
        if self.by_addr.get(addr) is entry:
            del self.by_addr[addr]
        if entry.common_name is not None and self._by_name.get(entry.common_name) is entry:
            del self._by_name[entry.common_name]
        if entry.vip is not None:
            if self.by_vip.get(entry.vip_int) is entry:
                del self.by_vip[entry.vip_int]
            if not entry.vip_pushed:  # an ifconfig-push address is not the pool's
                self.pool.release(entry.vip)
        for network in entry.iroutes:
            self.iroutes.remove(network, entry)
        if entry.vip6 is not None:
            if self.by_vip6.get(entry.vip6_packed) is entry:
                del self.by_vip6[entry.vip6_packed]
            if self.pool6 is not None:
                self.pool6.release(entry.vip6)
