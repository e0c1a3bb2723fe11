"""Byte counters around a Server or Client, as the Driver's endpoint.

The protocol layer counts packets per key but no bytes per peer, and a key's counters vanish
with the key at every renegotiation; OpenVPN's status file reports bytes per client for the
whole connection. So the runtime wraps the endpoint the Driver drives and counts what passes:
link bytes per session and in total, TUN bytes in total.

Per packet this adds one call and two dictionary lookups; no allocation.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import Buffer
from tunnel.protocol.client import Client
from tunnel.protocol.events import Event
from tunnel.protocol.server import Server
from tunnel.protocol.session import Session
from tunnel.protocol.verdicts import TO_TUN

__all__ = ["CountingClient", "CountingServer", "Traffic"]

Address = tuple[str, int]


@dataclass(slots=True)
class Traffic:
    """Bytes in each direction: link = UDP payloads, tun = cleartext IP packets."""

    link_rx: int = 0
    link_tx: int = 0
    tun_rx: int = 0  # read from the device (to be sent)
    tun_tx: int = 0  # written to the device (received)
    link_rx_packets: int = 0  # datagrams (the metrics endpoint's packet counters)
    link_tx_packets: int = 0


class CountingServer:
    """A `Server` as a Driver endpoint, counting bytes per session."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.totals = Traffic()
        self.per_session: dict[Session, Traffic] = {}
        self._by_addr = server.by_addr  # the same dict object for the server's lifetime

    def _traffic(self, addr: Address) -> Traffic | None:
        session = self._by_addr.get(addr)
        if session is None:
            return None
        traffic = self.per_session.get(session)
        if traffic is None:
            traffic = self.per_session[session] = Traffic()
        return traffic

    def receive(self, buf: Buffer, addr: Address, now: float) -> int:
        size = len(buf)
        verdict = self.server.receive(buf, addr, now)
        totals = self.totals
        totals.link_rx += size
        totals.link_rx_packets += 1
        traffic = self._traffic(addr)  # after receive: a float has moved the session already
        if traffic is not None:
            traffic.link_rx += size
            traffic.link_rx_packets += 1
        if verdict == TO_TUN:
            totals.tun_tx += len(buf)
        return verdict

    def encrypt(self, buf: Buffer, now: float) -> Address | None:
        size = len(buf)
        addr = self.server.encrypt(buf, now)
        if addr is None:
            return None
        totals = self.totals
        totals.tun_rx += size
        sealed = len(buf)
        totals.link_tx += sealed
        totals.link_tx_packets += 1
        traffic = self._traffic(addr)
        if traffic is not None:
            traffic.link_tx += sealed
            traffic.link_tx_packets += 1
        return addr

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = self.server.datagrams_to_send(now)
        for datagram, addr in out:
            self.totals.link_tx += len(datagram)
            self.totals.link_tx_packets += 1
            traffic = self._traffic(addr)
            if traffic is not None:
                traffic.link_tx += len(datagram)
                traffic.link_tx_packets += 1
        return out

    def get_timer(self) -> float | None:
        return self.server.get_timer()

    def handle_timer(self, now: float) -> None:
        self.server.handle_timer(now)

    def next_event(self) -> Event | None:
        return self.server.next_event()

    def close(self, now: float) -> None:
        self.server.close(now)

    def forget(self, session: Session) -> Traffic:
        """Drop a gone session's counters; what it had counted."""
        return self.per_session.pop(session, None) or Traffic()


class CountingClient:
    """A `Client` as a Driver endpoint, counting bytes (one peer: totals only)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.totals = Traffic()

    def receive(self, buf: Buffer, addr: Address, now: float) -> int:
        size = len(buf)
        verdict = self.client.receive(buf, addr, now)
        self.totals.link_rx += size
        self.totals.link_rx_packets += 1
        if verdict == TO_TUN:
            self.totals.tun_tx += len(buf)
        return verdict

    def encrypt(self, buf: Buffer, now: float) -> Address | None:
        size = len(buf)
        addr = self.client.encrypt(buf, now)
        if addr is not None:
            self.totals.tun_rx += size
            self.totals.link_tx += len(buf)
            self.totals.link_tx_packets += 1
        return addr

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = self.client.datagrams_to_send(now)
        for datagram, _ in out:
            self.totals.link_tx += len(datagram)
            self.totals.link_tx_packets += 1
        return out

    def get_timer(self) -> float | None:
        return self.client.get_timer()

    def handle_timer(self, now: float) -> None:
        self.client.handle_timer(now)

    def next_event(self) -> Event | None:
        return self.client.next_event()

    def close(self, now: float) -> None:
        self.client.close(now)
