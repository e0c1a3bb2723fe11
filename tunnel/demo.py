"""`tunnel demo`: a server and a client in one process on 127.0.0.1, real UDP sockets, real TLS
with a throwaway PKI, then N IPv4 packets both ways through the encrypted tunnel, every byte
checked on arrival. No root needed: in-memory packet devices stand in for TUN.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core import BufferPool
from tunnel.io.device import MemoryDevice
from tunnel.io.driver import Driver
from tunnel.io.udp import open_udp_socket
from tunnel.pki import generate_pki_in_memory
from tunnel.protocol.aead import BACKEND as AEAD_BACKEND
from tunnel.protocol.client import Client
from tunnel.protocol.events import DataChannelReady, Event, PushApplied, SessionClosed
from tunnel.protocol.server import AddressPool, Server, ServerSettings
from tunnel.protocol.tls_settings import TlsSettings
from tunnel.runtime import Timers, make_frame, make_pool, session_settings

SERVER_VIP = ipaddress.IPv4Address("10.8.0.1")
_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
_IP_HEADER_FIXED = struct.Struct("!BBHHHBBH")  # all but the two addresses
_SEQ = struct.Struct("!Q")
_PATTERN = bytes((i * 131 + 17) & 0xFF for i in range(4096))
# Packets injected but not yet delivered, per direction: keeps the in-memory devices and the
# socket buffers from overflowing, so every packet is expected to arrive.
_WINDOW = 256
_STALL_TIMEOUT = 5.0


@dataclass(slots=True)
class Flow:
    """One direction of demo traffic: builds packets and checks each one on arrival."""

    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    size: int
    total: int
    sent: int = 0
    received: int = 0
    corrupt: int = 0
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    _addresses: bytes = b""

    def __post_init__(self) -> None:
        self._addresses = self.src.packed + self.dst.packed

    def packet(self, seq: int) -> bytes:
        payload_len = self.size - _IP_HEADER.size
        start = seq % 1024
        body = _SEQ.pack(seq) + _PATTERN[start : start + payload_len - _SEQ.size]
        header = _IP_HEADER_FIXED.pack(0x45, 0, self.size, seq & 0xFFFF, 0, 64, 17, 0)
        return header + self._addresses + body

    def on_arrival(self, data: memoryview) -> None:
        if len(data) != self.size:
            self.corrupt += 1
            return
        seq = _SEQ.unpack_from(data, _IP_HEADER.size)[0]
        if seq >= self.total or data != self.packet(seq):
            self.corrupt += 1
        else:
            self.received += 1
        self.progressed.set()


@dataclass(slots=True)
class DemoResult:
    cipher: str
    handshake_ms: float
    packets: int
    delivered: int
    corrupt: int
    seconds: float
    bytes_moved: int
    auth_failures: int
    replays: int
    renegotiations: int
    pools: dict[str, BufferPool]
    drivers: dict[str, Driver]

    @property
    def ok(self) -> bool:
        return self.delivered == self.packets and self.corrupt == 0

    @property
    def mbit_per_s(self) -> float:
        return self.bytes_moved * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0


async def run_demo(
    *,
    packets: int = 100_000,
    size: int = 1400,
    cipher: str = "AES-256-GCM",
    progress: bool = True,
    reneg_sec: float = 3600.0,
) -> DemoResult:
    if not 28 <= size <= 1500:
        raise ValueError(f"packet size must be 28..1500 bytes, got {size}")
    loop = asyncio.get_running_loop()
    pem = generate_pki_in_memory()
    timers = Timers(ping=10, ping_restart=60, reneg_sec=reneg_sec)

    def tls(role: str) -> TlsSettings:
        return TlsSettings(
            ca=pem["ca.crt"].decode(),
            cert=pem[f"{role}.crt"].decode(),
            key=pem[f"{role}.key"].decode(),
            remote_cert_tls="client" if role == "server" else "server",
        )

    server_settings = ServerSettings(
        session=session_settings(
            is_client=False, tls=tls("server"), data_ciphers=[cipher], timers=timers
        ),
        pool=AddressPool(ipaddress.IPv4Address("10.8.0.2"), ipaddress.IPv4Address("10.8.0.254")),
        push=("route-gateway 10.8.0.1", "topology subnet", "ping 10", "ping-restart 60"),
    )
    client_settings = session_settings(
        is_client=True, tls=tls("client"), data_ciphers=[cipher], timers=timers
    )

    frame = make_frame()
    server_sock = open_udp_socket("127.0.0.1", 0)
    client_sock = open_udp_socket("127.0.0.1", 0)
    server_addr = server_sock.getsockname()[:2]
    flows: dict[str, Flow] = {}
    ready: dict[str, asyncio.Event] = {"server": asyncio.Event(), "client": asyncio.Event()}
    closed: list[SessionClosed] = []
    client_vip: list[ipaddress.IPv4Address] = []

    def sink(direction: str) -> MemoryDevice:
        return MemoryDevice(
            f"demo-{direction}", on_write=lambda data: flows[direction].on_arrival(data)
        )

    server_dev = sink("to_server")
    client_dev = sink("to_client")

    def on_event(side: str) -> Callable[[Event], None]:
        def handle(event: Event) -> None:
            if isinstance(event, DataChannelReady):
                ready[side].set()
            elif isinstance(event, PushApplied) and event.options.ifconfig is not None:
                client_vip.append(ipaddress.IPv4Address(event.options.ifconfig[0]))
            elif isinstance(event, SessionClosed):
                closed.append(event)
                ready[side].set()

        return handle

    started = time.perf_counter()
    now = loop.time()
    server = Server(server_settings, now)
    client = Client(client_settings, [server_addr], now, reconnect=False)
    pools = {"server": make_pool(frame), "client": make_pool(frame)}
    drivers = {
        "server": Driver(
            loop, server, server_sock, server_dev, pools["server"], on_event=on_event("server")
        ),
        "client": Driver(
            loop, client, client_sock, client_dev, pools["client"], on_event=on_event("client")
        ),
    }
    try:
        for driver in drivers.values():
            driver.start()
        await asyncio.wait_for(
            asyncio.gather(ready["server"].wait(), ready["client"].wait()), timeout=30
        )
        if closed or not client_vip:
            reason = closed[0].reason if closed else "no ifconfig was pushed"
            raise RuntimeError(f"handshake failed: {reason}")
        handshake_ms = (time.perf_counter() - started) * 1000
        vip = client_vip[0]
        flows["to_server"] = Flow(vip, SERVER_VIP, size, packets)
        flows["to_client"] = Flow(SERVER_VIP, vip, size, packets)
        t0 = time.perf_counter()
        reporter = asyncio.create_task(_report(flows, size, packets)) if progress else None
        try:
            await asyncio.gather(
                _feed(flows["to_server"], client_dev), _feed(flows["to_client"], server_dev)
            )
        finally:
            seconds = time.perf_counter() - t0
            if reporter is not None:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter  # the line is drawn once more, final, before the summary
        delivered = sum(f.received for f in flows.values())
        corrupt = sum(f.corrupt for f in flows.values())
        keys = [k for s in [client.session, *server.sessions] for k in s.data_keys if k is not None]
        for driver in drivers.values():
            driver.close_endpoint()
        return DemoResult(
            cipher=cipher.upper(),
            handshake_ms=handshake_ms,
            packets=2 * packets,
            delivered=delivered,
            corrupt=corrupt,
            seconds=seconds,
            bytes_moved=delivered * size,
            auth_failures=sum(k.auth_failures for k in keys),
            replays=sum(k.replays for k in keys),
            renegotiations=client.session.renegotiations,
            pools=pools,
            drivers=drivers,
        )
    finally:
        for driver in drivers.values():
            driver.stop()
        for sock in (server_sock, client_sock):
            sock.close()
        for dev in (server_dev, client_dev):
            dev.close()


async def _feed(flow: Flow, device: MemoryDevice) -> None:
    """Inject packets, keeping at most _WINDOW in flight; give up after a long stall."""
    while flow.received + flow.corrupt < flow.total:
        while flow.sent < flow.total and flow.sent - flow.received - flow.corrupt < _WINDOW:
            if not device.inject(flow.packet(flow.sent)):
                break
            flow.sent += 1
        flow.progressed.clear()
        try:
            await asyncio.wait_for(flow.progressed.wait(), timeout=_STALL_TIMEOUT)
        except TimeoutError:
            return  # lost packets: the summary reports delivered < sent


async def _report(flows: dict[str, Flow], size: int, packets: int) -> None:
    """The live progress line until cancelled (imported here: only a terminal needs rich)."""
    from tunnel.demo_progress import REFRESH_SECONDS, DemoProgress

    with DemoProgress(packets, size) as line:
        try:
            while True:
                line.update(flows["to_server"].received, flows["to_client"].received)
                await asyncio.sleep(REFRESH_SECONDS)
        finally:
            line.update(flows["to_server"].received, flows["to_client"].received)


def format_result(result: DemoResult) -> str:
    lines = [
        "tunnel demo: server and client on 127.0.0.1 over UDP, TLS + AEAD data channel",
        f"  cipher            {result.cipher} (AEAD: {AEAD_BACKEND})",
        f"  handshake         {result.handshake_ms:.1f} ms (TLS, key-method 2, push)",
        f"  packets           {result.delivered}/{result.packets} delivered "
        f"({result.packets // 2} each way), {result.corrupt} corrupt, every byte verified",
        f"  throughput        {result.mbit_per_s:.1f} Mbit/s over {result.seconds:.2f} s "
        f"(both directions, {result.bytes_moved / 1e6:.1f} MB)",
        f"  dropped           auth failures {result.auth_failures}, replays {result.replays}",
        f"  renegotiations    {result.renegotiations}",
    ]
    for side, pool in result.pools.items():
        s = pool.stats
        lines.append(
            f"  pool ({side:<6})   size {s.size}, in use {s.in_use} (idle), high-water "
            f"{s.high_water}, acquires {s.acquires}, exhaustions {s.exhaustions}"
        )
    for side, driver in result.drivers.items():
        a = driver.arena
        lines.append(
            f"  arena ({side:<6})  iterations {a.iterations}, entries freed {a.entries_freed}, "
            f"bytes freed {a.bytes_freed}"
        )
    lines.append("  result            " + ("OK" if result.ok else "FAILED"))
    return "\n".join(lines)
