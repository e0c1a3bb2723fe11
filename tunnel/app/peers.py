"""The server's view of its connected clients: who, from where, since when, with what.

The server's events say *what* happened (a handshake completed, a session closed) but not to
*which* client, so the registry watches the server (`Server.watchers`): a session that is
identified (has a peer common name) and not registered yet has just connected; a registered one
that is removed has gone; `sync()` applies what was told since the last call, so its cost is
the number of changes, never the number of sessions. A removed session that never became a
peer (a half-open one) has its byte counters forgotten at once. The status file and the log
lines ("client/192.0.2.7:51234 ...") are built from it.
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
        self._by_name: dict[str, dict[Session, Peer]] = {}
        self._identified: dict[Session, None] = {}
        self._removed: dict[Session, None] = {}
        self._floated: dict[Session, None] = {}
        endpoint.server.watchers.append(self._told)
        self._next_client_id = 0
        # Told ("arrived" | "left", peer) as sync() finds them (the management interface).
        self.listeners: list[Callable[[str, Peer], None]] = []

    def _told(self, what: str, session: Session) -> None:
        if what == "identified":
            if session not in self.peers:
                self._identified[session] = None
        elif what == "floated":
            if session in self.peers:
                self._floated[session] = None
        elif what == "removed":
            self._identified.pop(session, None)
            self._floated.pop(session, None)
            if session in self.peers:
                self._removed[session] = None
            else:
                self.endpoint.forget(session)  # never a peer: nothing left to report

    def sync(self) -> tuple[list[Peer], list[Peer]]:
        """Apply what the server told since the last call: (peers that arrived, that left)."""
        server = self.endpoint.server
        arrived: list[Peer] = []
        identified, self._identified = self._identified, {}
        for session in identified:
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
            self._by_name.setdefault(name, {})[session] = peer
            arrived.append(peer)
        left: list[Peer] = []
        removed, self._removed = self._removed, {}
        for session in removed:
            peer = self.peers.pop(session)
            named = self._by_name.get(peer.common_name)
            if named is not None:
                named.pop(session, None)
                if not named:
                    del self._by_name[peer.common_name]
            peer.final_traffic = self.endpoint.forget(session)
            left.append(peer)
        floated, self._floated = self._floated, {}
        for session in floated:
            known = self.peers.get(session)
            if known is not None:
                known.address = session.remote_addr  # floated, after authenticating
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
        found = self._by_name.get(name) if name is not None else None
        if not found or len(found) != 1:
            return None
        return next(iter(found.values()))

    def traffic(self, peer: Peer) -> Traffic:
        return self.endpoint.per_session.get(peer.session) or peer.final_traffic or Traffic()
