"""The server's view of its connected clients: who, from where, since when, with what.

The server's events say *what* happened (a handshake completed, a session closed) but not to
*which* client, so the runtime keeps this registry and reconciles it with the server's session
table whenever an event arrives: a session that has a peer common name and is not registered
yet has just connected; a registered one that left the table has gone. The status file and the
log lines ("client/192.0.2.7:51234 ...") are built from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tunnel.app.accounting import CountingServer, Traffic
from tunnel.protocol.session import Session

__all__ = ["Peer", "PeerRegistry"]

Address = tuple[str, int]


@dataclass(slots=True)
class Peer:
    session: Session
    client_id: int  # OpenVPN's "Client ID": a counter of connections since start
    common_name: str
    address: Address
    connected_since: float  # wall clock (time.time())
    virtual_address: str | None
    final_traffic: Traffic | None = field(default=None)

    @property
    def prefix(self) -> str:
        """OpenVPN's per-client log prefix: common name / real address."""
        return f"{self.common_name}/{self.address[0]}:{self.address[1]}"


class PeerRegistry:
    def __init__(self, endpoint: CountingServer, clock: Callable[[], float] = time.time) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.peers: dict[Session, Peer] = {}
        self._next_client_id = 0
        # Told ("arrived" | "left", peer) as sync() finds them (the management interface).
        self.listeners: list[Callable[[str, Peer], None]] = []

    def sync(self) -> tuple[list[Peer], list[Peer]]:
        """Reconcile with the server's table: (peers that arrived, peers that left)."""
        server = self.endpoint.server
        live = set(server.by_addr.values())
        arrived: list[Peer] = []
        for session in live:
            name = session.peer_common_name
            if session in self.peers or name is None or session.closed is not None:
                continue
            vip = server.vip_of.get(session.peer_id) if session.peer_id is not None else None
            peer = Peer(
                session=session,
                client_id=self._next_client_id,
                common_name=name,
                address=session.remote_addr,
                connected_since=self.clock(),
                virtual_address=str(vip) if vip is not None else None,
            )
            self._next_client_id += 1
            self.peers[session] = peer
            arrived.append(peer)
        left: list[Peer] = []
        for session, peer in list(self.peers.items()):
            if session not in live:
                del self.peers[session]
                peer.final_traffic = self.endpoint.forget(session)
                left.append(peer)
            elif session.remote_addr != peer.address:
                peer.address = session.remote_addr  # floated, after authenticating
        for listener in self.listeners:
            for peer in arrived:
                listener("arrived", peer)
            for peer in left:
                listener("left", peer)
        return arrived, left

    def by_peer_id(self, peer_id: int | None) -> Peer | None:
        if peer_id is None:
            return None
        table = self.endpoint.server.by_peer_id
        session = table[peer_id] if 0 <= peer_id < len(table) else None
        return self.peers.get(session) if session is not None else None

    def by_common_name(self, name: str | None) -> Peer | None:
        """The one peer with that name; None if there is none or several (duplicate-cn)."""
        found = [p for p in self.peers.values() if p.common_name == name]
        return found[0] if len(found) == 1 else None

    def traffic(self, peer: Peer) -> Traffic:
        return self.endpoint.per_session.get(peer.session) or peer.final_traffic or Traffic()
