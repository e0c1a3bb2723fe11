"""The server's view of its connected clients: who, from where, since when, with what.

Kept from the server's events alone: every event about a client carries its `peer_id`, so the
first HandshakeComplete / DataChannelReady of an identified client (it has a common name) makes
it a peer, and its SessionClosed makes it leave. Each event costs one dict lookup, never a
look at the other clients. A peer reads its address, virtual address and byte counters live
from the server's entry (`Server.peer(peer_id)`), so floats and counters need no bookkeeping
here. The status file, the metrics, the management interface and the log lines
("client/192.0.2.7:51234 ...") are built from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tunnel.protocol.events import DataChannelReady, Event, HandshakeComplete, SessionClosed
from tunnel.protocol.peertable import PeerEntry
from tunnel.protocol.server import Server
from tunnel.protocol.session import Session
from tunnel.protocol.traffic import Traffic

__all__ = ["Peer", "PeerRegistry"]

Address = tuple[str, int]


@dataclass(slots=True, eq=False)
class Peer:
    entry: PeerEntry  # the server's entry: session, addresses (kept after it left)
    client_id: int  # OpenVPN's "Client ID": a counter of connections since start
    common_name: str
    connected_since: float  # wall clock (time.time())

    @property
    def session(self) -> Session:
        return self.entry.session

    @property
    def peer_id(self) -> int:
        return self.entry.peer_id

    @property
    def address(self) -> Address:
        return self.entry.address  # where it is now: it may have floated

    @property
    def virtual_address(self) -> str | None:
        vip = self.entry.vip
        return str(vip) if vip is not None else None

    @property
    def traffic(self) -> Traffic:
        return self.entry.session.traffic  # link bytes of the whole connection

    @property
    def prefix(self) -> str:
        """OpenVPN's per-client log prefix: common name / real address."""
        return f"{self.common_name}/{self.address[0]}:{self.address[1]}"


class PeerRegistry:
    def __init__(self, server: Server, clock: Callable[[], float] = time.time) -> None:
        self.server = server
        self.clock = clock
        self.peers: dict[int, Peer] = {}  # by peer_id
        self._by_name: dict[str, dict[int, Peer]] = {}
        self._by_client_id: dict[int, Peer] = {}
        self._next_client_id = 0
        self._client_id_step = 1
        # A multi-worker server's: the client id the supervisor gave this session (None: the
        # local counter's next).
        self.client_id_for: Callable[[PeerEntry], int | None] | None = None
        # Told ("arrived" | "left", peer) as events make them so (log, management).
        self.listeners: list[Callable[[str, Peer], None]] = []

    def on_event(self, event: Event) -> Peer | None:
        """Apply one server event; the peer it is about, if any (also the one it removed)."""
        if isinstance(event, (HandshakeComplete, DataChannelReady)):
            known = self.peers.get(event.peer_id) if event.peer_id is not None else None
            return known if known is not None else self._arrive(event.peer_id)
        if isinstance(event, SessionClosed):
            return self._leave(event.peer_id)
        peer_id = getattr(event, "peer_id", None)
        return self.peers.get(peer_id) if peer_id is not None else None

    def _arrive(self, peer_id: int | None) -> Peer | None:
        entry = self.server.peer(peer_id)
        if entry is None or entry.session.closed is not None:
            return None
        name = entry.session.peer_common_name
        if name is None:
            return None
        client_id = self.client_id_for(entry) if self.client_id_for is not None else None
        if client_id is None or client_id in self._by_client_id:
            client_id = self._next_client_id
            self._next_client_id += self._client_id_step
        peer = Peer(entry=entry, client_id=client_id, common_name=name,
                    connected_since=self.clock())
        self.peers[entry.peer_id] = peer
        self._by_client_id[peer.client_id] = peer
        self._by_name.setdefault(name, {})[entry.peer_id] = peer
        for listener in self.listeners:
            listener("arrived", peer)
        return peer

    def _leave(self, peer_id: int | None) -> Peer | None:
        peer = self.peers.pop(peer_id, None) if peer_id is not None else None
        if peer is None:
            return None  # never a peer (a half-open session): nothing to report
        del self._by_client_id[peer.client_id]
        named = self._by_name.get(peer.common_name)
        if named is not None:
            named.pop(peer.peer_id, None)
            if not named:
                del self._by_name[peer.common_name]
        for listener in self.listeners:
            listener("left", peer)
        return peer

    def number_from(self, first: int, step: int) -> None:
        """Client ids `first, first + step, ...` (a worker of a multi-worker server: ids
        unique across the workers, so the supervisor's status and client-kill use them)."""
        self._next_client_id, self._client_id_step = first, step

    def by_peer_id(self, peer_id: int | None) -> Peer | None:
        return self.peers.get(peer_id) if peer_id is not None else None

    def by_client_id(self, client_id: int) -> Peer | None:
        return self._by_client_id.get(client_id)

    def by_common_name(self, name: str | None) -> Peer | None:
        """The one peer with that name; None if there is none or several (duplicate-cn)."""
        found = self._by_name.get(name) if name is not None else None
        if not found or len(found) != 1:
            return None
        return next(iter(found.values()))

    def named(self, name: str) -> list[Peer]:
        """Every peer with that common name (several with duplicate-cn)."""
        return list(self._by_name.get(name, {}).values())

    def in_order(self) -> list[Peer]:
        """The peers by client id (the order stock lists them in)."""
        return sorted(self.peers.values(), key=lambda p: p.client_id)
