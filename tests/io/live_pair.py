"""What the live pairs of the I/O tests share (tests/io/tunnel_pair.py over UDP,
tests/io/tcp_pair.py over TCP): the test PKI, the server and client endpoints as the app
builds them, one side's in-memory device, pool and driver, the wait for both data channels,
and the exchange of packets through the tunnel. Each pair only says how its link and drivers
are made."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core import BufferPool, Frame
from tunnel.io.device import MemoryDevice
from tunnel.io.driver import Endpoint
from tunnel.pki import generate_pki_in_memory
from tunnel.protocol.client import Client
from tunnel.protocol.events import DataChannelReady, Event, PushApplied
from tunnel.protocol.server import AddressPool, Server, ServerSettings
from tunnel.protocol.tls_settings import TlsSettings
from tunnel.runtime import Timers, make_pool, session_settings

__all__ = [
    "SERVER_VIP", "LivePair", "MakeDriver", "Side", "ipv4_udp", "make_client", "make_server", "tls",
]

SERVER_VIP = ipaddress.IPv4Address("10.8.0.1")
_PEM = generate_pki_in_memory()

# A Driver (UDP) or a ConnDriver (TCP): the tests read each kind's own counters off it.
AnyDriver = Any
MakeDriver = Callable[[MemoryDevice, BufferPool, Callable[[Event], None]], AnyDriver]


def ipv4_udp(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, payload: bytes) -> bytes:
    """An IPv4/UDP packet (checksums zero: nothing here checks them)."""
    total = 28 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, src.packed, dst.packed)
    return ip + struct.pack("!HHHH", 1000, 2000, 8 + len(payload), 0) + payload


def tls(role: str) -> TlsSettings:
    return TlsSettings(
        ca=_PEM["ca.crt"].decode(), cert=_PEM[f"{role}.crt"].decode(),
        key=_PEM[f"{role}.key"].decode(),
        remote_cert_tls="client" if role == "server" else "server",
    )


def make_server(now: float, timers: Timers, proto: str = "UDPv4") -> Server:
    return Server(
        ServerSettings(
            session=session_settings(is_client=False, tls=tls("server"), timers=timers,
                                     proto=proto),
            pool=AddressPool(ipaddress.IPv4Address("10.8.0.2"),
                             ipaddress.IPv4Address("10.8.0.254")),
            push=("route-gateway 10.8.0.1", "topology subnet", "ping 10", "ping-restart 60"),
        ),
        now,
    )


def make_client(now: float, timers: Timers, server: tuple[str, int],
                proto: str = "UDPv4") -> Client:
    return Client(session_settings(is_client=True, tls=tls("client"), timers=timers,
                                   proto=proto),
                  [server], now, reconnect=False)


@dataclass
class Side:
    endpoint: Endpoint
    sock: socket.socket
    device: MemoryDevice
    pool: BufferPool
    driver: AnyDriver
    arrived: list[bytes] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def addr(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port


class LivePair:
    """Both ends up and the data channel ready on entry (`start`); everything closed on exit.

    `payload_only`: compare packets by what they carry (a fake TUN with offload hands the
    packets over as the kernel cuts them: checksums computed, IP ids counted up)."""

    def __init__(self, *, payload_only: bool = False) -> None:
        self.client_vip: ipaddress.IPv4Address | None = None
        self.server: Side
        self.client: Side
        self._payload_only = payload_only

    def side(self, endpoint: Endpoint, sock: socket.socket, frame: Frame,
             make_driver: MakeDriver, **device: object) -> Side:
        """One end: an in-memory device collecting what the tunnel writes, a pool of `frame`,
        the driver `make_driver` builds, told every event (readiness, the pushed address)."""
        arrived: list[bytes] = []
        dev = MemoryDevice(on_write=lambda view: arrived.append(bytes(view)),
                           **device)  # type: ignore[arg-type]
        pool = make_pool(frame)
        ready = asyncio.Event()

        def on_event(event: Event) -> None:
            if isinstance(event, DataChannelReady):
                ready.set()
            elif isinstance(event, PushApplied) and event.options.ifconfig is not None:
                self.client_vip = ipaddress.IPv4Address(event.options.ifconfig[0])

        driver = make_driver(dev, pool, on_event)
        return Side(endpoint, sock, dev, pool, driver, arrived, ready)

    async def start(self) -> None:
        """Start both drivers and wait for both data channels (closing all if that fails)."""
        try:
            self.server.driver.start()
            self.client.driver.start()
            await asyncio.wait_for(
                asyncio.gather(self.server.ready.wait(), self.client.ready.wait()), 30
            )
            assert self.client_vip is not None, "no ifconfig pushed"
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        raise NotImplementedError

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def exchange(self, count: int = 20, timeout: float = 10.0) -> None:
        """`count` packets each way through the tunnel; AssertionError if any is missing."""
        assert self.client_vip is not None
        up = [ipv4_udp(self.client_vip, SERVER_VIP, b"up%05d" % i) for i in range(count)]
        down = [ipv4_udp(SERVER_VIP, self.client_vip, b"dn%05d" % i) for i in range(count)]
        self.server.arrived.clear()
        self.client.arrived.clear()
        for packet in up:
            self.client.device.inject(packet)
        for packet in down:
            self.server.device.inject(packet)
        key: Callable[[bytes], bytes] = (lambda p: p[28:]) if self._payload_only else bytes
        want_up, want_down = {key(p) for p in up}, {key(p) for p in down}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            got_up = {key(p) for p in self.server.arrived}
            got_down = {key(p) for p in self.client.arrived}
            if want_up <= got_up and want_down <= got_down:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"through the tunnel: {len(want_up & got_up)}/{count} up, "
            f"{len(want_down & got_down)}/{count} down"
        )
