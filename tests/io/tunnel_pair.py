"""A server and a client driven by the real Driver in this process: real UDP sockets on
127.0.0.1, in-memory packet devices (optionally speaking virtio-net like a TUN with
IFF_VNET_HDR: the fake TUN), real TLS. For tests of the I/O layer that need a live
tunnel (fuzzing, faults): `async with TunnelPair() as t: ...`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from core import BufferPool
from tunnel.io.device import MemoryDevice
from tunnel.io.driver import Driver, Endpoint
from tunnel.io.udp import open_udp_socket
from tunnel.pki import generate_pki_in_memory
from tunnel.protocol.client import Client
from tunnel.protocol.events import DataChannelReady, Event, PushApplied
from tunnel.protocol.server import AddressPool, Server, ServerSettings
from tunnel.protocol.tls_settings import TlsSettings
from tunnel.runtime import Timers, make_frame, make_pool, session_settings

SERVER_VIP = ipaddress.IPv4Address("10.8.0.1")
_PEM = generate_pki_in_memory()


def ipv4_udp(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, payload: bytes) -> bytes:
    """An IPv4/UDP packet (checksums zero: nothing here checks them)."""
    total = 28 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, src.packed, dst.packed)
    return ip + struct.pack("!HHHH", 1000, 2000, 8 + len(payload), 0) + payload


@dataclass
class Side:
    endpoint: Endpoint
    sock: socket.socket
    device: MemoryDevice
    pool: BufferPool
    driver: Driver
    arrived: list[bytes] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def addr(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port


def _tls(role: str) -> TlsSettings:
    return TlsSettings(
        ca=_PEM["ca.crt"].decode(), cert=_PEM[f"{role}.crt"].decode(),
        key=_PEM[f"{role}.key"].decode(),
        remote_cert_tls="client" if role == "server" else "server",
    )


class TunnelPair:
    """Both ends up and the data channel ready on entry; everything closed on exit."""

    def __init__(self, *, server_wrap: type | None = None, offload: bool = False,
                 capacity: int = 1024,
                 open_socket: Callable[[], socket.socket] | None = None) -> None:
        """`offload`: both devices behave as TUNs with IFF_VNET_HDR (the driver coalesces);
        `open_socket`: how each side's UDP socket on 127.0.0.1 is made (default: here; a
        test may make them in a namespace of its own, with a small send buffer)."""
        self._open_socket = open_socket or (lambda: open_udp_socket("127.0.0.1", 0))
        self._server_wrap = server_wrap
        self._offload = offload
        self._capacity = capacity
        self.client_vip: ipaddress.IPv4Address | None = None
        self.server: Side
        self.client: Side

    async def __aenter__(self) -> TunnelPair:
        loop = asyncio.get_running_loop()
        timers = Timers(ping=10, ping_restart=60)
        now = loop.time()
        server_ep: Endpoint = Server(
            ServerSettings(
                session=session_settings(is_client=False, tls=_tls("server"), timers=timers),
                pool=AddressPool(ipaddress.IPv4Address("10.8.0.2"),
                                 ipaddress.IPv4Address("10.8.0.254")),
                push=("route-gateway 10.8.0.1", "topology subnet", "ping 10",
                      "ping-restart 60"),
            ),
            now,
        )
        if self._server_wrap is not None:
            server_ep = self._server_wrap(server_ep)
        server_sock = self._open_socket()
        client_sock = self._open_socket()
        client_ep: Endpoint = Client(
            session_settings(is_client=True, tls=_tls("client"), timers=timers),
            [server_sock.getsockname()[:2]], now, reconnect=False,
        )
        frame = make_frame()
        self.server = self._side(loop, server_ep, server_sock, frame)
        self.client = self._side(loop, client_ep, client_sock, frame)
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
        return self

    def _side(self, loop: asyncio.AbstractEventLoop, endpoint: Endpoint,
              sock: socket.socket, frame: object) -> Side:
        arrived: list[bytes] = []
        # (`offload` only when asked: scripts/bench_wakeup.py runs this against older trees.)
        extra = {"offload": True} if self._offload else {}
        device = MemoryDevice(on_write=lambda view: arrived.append(bytes(view)),
                              capacity=self._capacity, **extra)
        pool = make_pool(frame)  # type: ignore[arg-type]
        ready = asyncio.Event()

        def on_event(event: Event) -> None:
            if isinstance(event, DataChannelReady):
                ready.set()
            elif isinstance(event, PushApplied) and event.options.ifconfig is not None:
                self.client_vip = ipaddress.IPv4Address(event.options.ifconfig[0])

        driver = Driver(loop, endpoint, sock, device, pool, on_event=on_event)
        return Side(endpoint, sock, device, pool, driver, arrived, ready)

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for side in (self.server, self.client):
            side.driver.stop()
            side.sock.close()
            side.device.close()

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
        # Through a fake TUN with offload, runs of datagrams come out as the kernel cuts them
        # (checksums computed, IP ids counted up): compare what the packets carry.
        key = (lambda p: p[28:]) if self._offload else (lambda p: p)
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
