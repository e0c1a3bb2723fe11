"""Client and server state machines wired together in memory, with a fake clock and a link
that can lose, reorder and duplicate datagrams. No sockets: what the I/O layer would do is done
here by hand, so every test is deterministic."""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from core import Buffer, BufferPool
from tunnel.pki import generate_pki_in_memory
from tunnel.protocol.client import Client
from tunnel.protocol.events import Event
from tunnel.protocol.server import AddressPool, Server, ServerSettings
from tunnel.protocol.tls_settings import TlsSettings
from tunnel.protocol.verdicts import TO_TUN
from tunnel.protocol.wrap import PLAIN, ControlWrap
from tunnel.runtime import Timers, make_frame, make_pool, session_settings

CLIENT_ADDR = ("192.0.2.10", 40000)
SERVER_ADDR = ("192.0.2.1", 1194)
SERVER_VIP = ipaddress.IPv4Address("10.8.0.1")
SERVER_VIP6 = ipaddress.IPv6Address("fd00:8::1")
_IP = struct.Struct("!BBHHHBBH4s4s")


@cache
def pki(tag: str = "main") -> dict[str, bytes]:
    """One PKI per tag for the whole test run (key generation is the slow part)."""
    return generate_pki_in_memory(ca_cn=f"test CA {tag}")


def tls_settings(
    role: str, *, tag: str = "main", ca_tag: str = "main", **extra: object
) -> TlsSettings:
    """Credentials of `role` issued by CA `tag`, trusting CA `ca_tag`."""
    pem = pki(tag)
    return TlsSettings(
        ca=pki(ca_tag)["ca.crt"].decode(),
        cert=pem[f"{role}.crt"].decode(),
        key=pem[f"{role}.key"].decode(),
        remote_cert_tls="client" if role == "server" else "server",
        **extra,  # type: ignore[arg-type]
    )


def ip_packet(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, payload: bytes) -> bytes:
    header = _IP.pack(0x45, 0, 20 + len(payload), 0, 0, 64, 17, 0, src.packed, dst.packed)
    return header + payload


@dataclass
class Link:
    """The network between the two: a queue of (datagram, src, dst) with optional faults."""

    loss: Callable[[int], bool] = lambda _n: False
    reorder: bool = False
    duplicate: bool = False
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    sent: int = 0
    in_flight: list[tuple[bytes, tuple[str, int], tuple[str, int]]] = field(default_factory=list)

    def send(self, datagram: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        self.sent += 1
        if self.loss(self.sent):
            return
        self.in_flight.append((datagram, src, dst))
        if self.duplicate and self.rng.random() < 0.3:
            self.in_flight.append((datagram, src, dst))

    def take(self) -> list[tuple[bytes, tuple[str, int], tuple[str, int]]]:
        batch, self.in_flight = self.in_flight, []
        if self.reorder:
            self.rng.shuffle(batch)
        return batch


class Pair:
    """A client and a server connected by a `Link`, driven by a fake clock."""

    def __init__(
        self,
        *,
        link: Link | None = None,
        client_tls: TlsSettings | None = None,
        server_tls: TlsSettings | None = None,
        client_ciphers: tuple[str, ...] = ("AES-256-GCM",),
        server_ciphers: tuple[str, ...] = ("AES-256-GCM",),
        timers: Timers | None = None,
        server_timers: Timers | None = None,
        reconnect: bool = False,
        comp_lzo_stub: bool = False,
        ipv6: bool = False,
        now: float = 1000.0,
        client_wrap: ControlWrap = PLAIN,
        server_wrap: ControlWrap = PLAIN,
        client_settings: dict[str, Any] | None = None,
        server_settings: dict[str, Any] | None = None,
        duplicate_cn: bool = False,
    ) -> None:
        self.now = now
        self.link = link or Link()
        timers = timers or Timers(ping=10, ping_restart=60)
        self.server = Server(
            ServerSettings(
                session=session_settings(
                    is_client=False,
                    tls=server_tls or tls_settings("server"),
                    data_ciphers=server_ciphers,
                    timers=server_timers or timers,
                    comp_lzo_stub=comp_lzo_stub,
                    control_wrap=server_wrap,
                    **(server_settings or {}),
                ),
                pool=AddressPool(
                    ipaddress.IPv4Address("10.8.0.2"), ipaddress.IPv4Address("10.8.0.20"),
                    duplicate_cn=duplicate_cn,
                ),
                duplicate_cn=duplicate_cn,
                push=(
                    "route-gateway 10.8.0.1",
                    "topology subnet",
                    f"ping {int(timers.ping)}",
                    f"ping-restart {int(timers.ping_restart)}",
                ),
                pool6=(
                    AddressPool(
                        ipaddress.IPv6Address("fd00:8::1000"), ipaddress.IPv6Address("fd00:8::1010")
                    )
                    if ipv6
                    else None
                ),
                prefix6=64,
                gateway6=SERVER_VIP6 if ipv6 else None,
            ),
            now,
        )
        self.client = Client(
            session_settings(
                is_client=True,
                tls=client_tls or tls_settings("client"),
                data_ciphers=client_ciphers,
                timers=timers,
                comp_lzo_stub=comp_lzo_stub,
                control_wrap=client_wrap,
                **(client_settings or {}),
            ),
            [SERVER_ADDR],
            now,
            reconnect=reconnect,
        )
        # Room for every cipher kind either side may negotiate, with the largest HMAC.
        self.frame = make_frame(
            comp_lzo_stub=comp_lzo_stub, ciphers=(*client_ciphers, *server_ciphers), auth="SHA512",
            compression="any",
        )
        self.pool: BufferPool = make_pool(self.frame, 64)
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.to_client_tun: list[bytes] = []
        self.to_server_tun: list[bytes] = []

    # -- moving things -----------------------------------------------------------------------

    def flush(self) -> None:
        for datagram, addr in self.client.datagrams_to_send(self.now):
            self.link.send(datagram, CLIENT_ADDR, addr)
        for datagram, addr in self.server.datagrams_to_send(self.now):
            self.link.send(datagram, SERVER_ADDR, addr)
        self._drain_events()

    def deliver(self) -> int:
        """Deliver what is in flight; returns how many datagrams moved."""
        batch = self.link.take()
        for datagram, src, dst in batch:
            buf = self._buffer(datagram)
            try:
                side, sink = (
                    (self.server, self.to_server_tun)
                    if dst == SERVER_ADDR
                    else (self.client, self.to_client_tun)
                )
                if side.receive(buf, src, self.now) == TO_TUN:
                    sink.append(bytes(buf.data))
            finally:
                self.pool.release(buf)
        return len(batch)

    def _buffer(self, datagram: bytes) -> Buffer:
        buf = self.pool.acquire()
        buf.append(datagram)
        return buf

    def run(self, seconds: float, step: float = 0.05) -> None:
        """Advance the fake clock, firing timers and moving datagrams."""
        end = self.now + seconds
        while self.now < end:
            self.pump()
            self.now = round(self.now + step, 6)
            for side in (self.client, self.server):
                timer = side.get_timer()
                if timer is not None and timer <= self.now:
                    side.handle_timer(self.now)
        self.pump()

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            self.flush()
            if not self.deliver():
                self.flush()
                if not self.link.in_flight:
                    return

    def _drain_events(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.client_events.append(event)
        while (event := self.server.next_event()) is not None:
            self.server_events.append(event)

    def connect(self, seconds: float = 10.0) -> None:
        self.run(seconds)

    @property
    def client_vip(self) -> ipaddress.IPv4Address:
        pushed = self.client.session.pushed
        assert pushed is not None and pushed.ifconfig is not None
        return ipaddress.IPv4Address(pushed.ifconfig[0])

    # -- data ---------------------------------------------------------------------------------

    def client_sends(self, payload: bytes) -> bytes | None:
        """Seal a packet on the client; the datagram that would go on the wire."""
        buf = self._buffer(ip_packet(self.client_vip, SERVER_VIP, payload))
        try:
            addr = self.client.encrypt(buf, self.now)
            return None if addr is None else bytes(buf.data)
        finally:
            self.pool.release(buf)

    def server_sends(self, payload: bytes) -> bytes | None:
        buf = self._buffer(ip_packet(SERVER_VIP, self.client_vip, payload))
        try:
            addr = self.server.encrypt(buf, self.now)
            return None if addr is None else bytes(buf.data)
        finally:
            self.pool.release(buf)

    def sealed_by_client(self, packet: bytes) -> bytes:
        """Any inner packet sealed by the client (no address rewriting)."""
        buf = self._buffer(packet)
        try:
            assert self.client.encrypt(buf, self.now) is not None
            return bytes(buf.data)
        finally:
            self.pool.release(buf)

    def sealed_by_server(self, packet: bytes) -> bytes | None:
        """Any inner packet routed and sealed by the server; None if it has no route."""
        buf = self._buffer(packet)
        try:
            return None if self.server.encrypt(buf, self.now) is None else bytes(buf.data)
        finally:
            self.pool.release(buf)

    def to_server(self, datagram: bytes) -> int:
        buf = self._buffer(datagram)
        try:
            verdict = self.server.receive(buf, CLIENT_ADDR, self.now)
            if verdict == TO_TUN:
                self.to_server_tun.append(bytes(buf.data))
            return verdict
        finally:
            self.pool.release(buf)

    def to_client(self, datagram: bytes) -> int:
        buf = self._buffer(datagram)
        try:
            verdict = self.client.receive(buf, SERVER_ADDR, self.now)
            if verdict == TO_TUN:
                self.to_client_tun.append(bytes(buf.data))
            return verdict
        finally:
            self.pool.release(buf)

    def to_server_from(self, datagram: bytes, addr: tuple[str, int]) -> int:
        """A datagram reaching the server from another client's address."""
        buf = self._buffer(datagram)
        try:
            return self.server.receive(buf, addr, self.now)
        finally:
            self.pool.release(buf)

    def connect_another(self, addr: tuple[str, int], seconds: float = 3.0) -> Client:
        """A second client with the same settings, connected from `addr` (the server needs
        duplicate-cn to keep both: the test PKI has one client certificate)."""
        other = Client(self.client.settings, [SERVER_ADDR], self.now, reconnect=False)
        for _ in range(int(seconds / 0.05)):
            for datagram, _addr in other.datagrams_to_send(self.now):
                self.to_server_from(datagram, addr)
            for datagram, to in self.server.datagrams_to_send(self.now):
                if to == addr:
                    self.deliver_to(other, datagram)
            self.now += 0.05
        assert other.session.send_key is not None and other.session.pushed is not None
        return other

    def deliver_to(self, client: Client, datagram: bytes) -> int:
        buf = self._buffer(datagram)
        try:
            return client.receive(buf, SERVER_ADDR, self.now)
        finally:
            self.pool.release(buf)


def ip6_packet(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, payload: bytes) -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, len(payload), 17, 64, src.packed, dst.packed)
    return header + payload
