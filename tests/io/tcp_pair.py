"""A server and a client over TCP, driven by the real stream drivers in this process: the
`TcpServerDriver` on a real listener on 127.0.0.1, the `ClientLinkDriver` connecting to it,
in-memory packet devices, real TLS (`proto tcp-server` / `tcp-client` as the app builds them).
For tests of the stream I/O layer that need a live tunnel: `async with TcpPair() as t: ...`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from tests.io.tunnel_pair import SERVER_VIP, Side, _tls, ipv4_udp
from tunnel.io.client_link import ClientLinkDriver, RemoteLink
from tunnel.io.conn_driver import ConnDriver
from tunnel.io.device import MemoryDevice
from tunnel.io.tcp_server import TcpServerDriver, open_tcp_listener
from tunnel.protocol.client import Client
from tunnel.protocol.events import DataChannelReady, Event, PushApplied
from tunnel.protocol.server import AddressPool, Server, ServerSettings
from tunnel.runtime import Timers, make_frame, make_pool, session_settings

__all__ = ["SERVER_VIP", "TcpPair", "ipv4_udp"]

MAX_CONNECTIONS = 16
HAND_WINDOW = 3.0  # seconds a connection may stay without a session


class TcpPair:
    """Both ends up and the data channel ready on entry; everything closed on exit.

    `server.sock` is the listener; `server.driver` / `client.driver` are `ConnDriver`s.
    """

    def __init__(self) -> None:
        self.client_vip: ipaddress.IPv4Address | None = None
        self.server: Side
        self.client: Side
        self.server_endpoint: Server
        self.client_endpoint: Client

    async def __aenter__(self) -> TcpPair:
        loop = asyncio.get_running_loop()
        timers = Timers(ping=10, ping_restart=60, hand_window=HAND_WINDOW)
        now = loop.time()
        server = Server(
            ServerSettings(
                session=session_settings(is_client=False, tls=_tls("server"), timers=timers,
                                         proto="TCPv4_SERVER"),
                pool=AddressPool(ipaddress.IPv4Address("10.8.0.2"),
                                 ipaddress.IPv4Address("10.8.0.254")),
                push=("route-gateway 10.8.0.1", "topology subnet", "ping 10",
                      "ping-restart 60"),
            ),
            now,
        )
        listener = open_tcp_listener("127.0.0.1", 0, socket.AF_INET)
        client = Client(
            session_settings(is_client=True, tls=_tls("client"), timers=timers,
                             proto="TCPv4_CLIENT"),
            [listener.getsockname()[:2]], now, reconnect=False,
        )
        frame = make_frame(stream=True)
        self.server_endpoint, self.client_endpoint = server, client
        self.server = self._side(server, listener, frame, lambda device, pool, on_event:
                                 TcpServerDriver(loop, server, server, listener, device, pool,
                                                 max_connections=MAX_CONNECTIONS,
                                                 hand_window=HAND_WINDOW, on_event=on_event))
        self.client = self._side(client, listener, frame, lambda device, pool, on_event:
                                 ClientLinkDriver(loop, client, client,
                                                  [RemoteLink(tcp=True, family=socket.AF_INET)],
                                                  device, pool, on_event=on_event))
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

    def _side(self, endpoint: object, sock: socket.socket, frame: object,
              make_driver: object) -> Side:
        arrived: list[bytes] = []
        device = MemoryDevice(on_write=lambda view: arrived.append(bytes(view)))
        pool = make_pool(frame)  # type: ignore[arg-type]
        ready = asyncio.Event()

        def on_event(event: Event) -> None:
            if isinstance(event, DataChannelReady):
                ready.set()
            elif isinstance(event, PushApplied) and event.options.ifconfig is not None:
                self.client_vip = ipaddress.IPv4Address(event.options.ifconfig[0])

        driver = make_driver(device, pool, on_event)  # type: ignore[operator]
        return Side(endpoint, sock, device, pool, driver, arrived, ready)  # type: ignore[arg-type]

    def drivers(self) -> tuple[ConnDriver, ConnDriver]:
        return self.server.driver, self.client.driver  # type: ignore[return-value]

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for side in (self.server, self.client):
            side.driver.stop()
            side.device.close()
        self.server.sock.close()

    async def exchange(self, count: int = 20, timeout: float = 10.0) -> None:
        """`count` packets each way through the tunnel; AssertionError if any is missing."""
        assert self.client_vip is not None
        up = {ipv4_udp(self.client_vip, SERVER_VIP, b"up%05d" % i) for i in range(count)}
        down = {ipv4_udp(SERVER_VIP, self.client_vip, b"dn%05d" % i) for i in range(count)}
        self.server.arrived.clear()
        self.client.arrived.clear()
        for packet in up:
            self.client.device.inject(packet)
        for packet in down:
            self.server.device.inject(packet)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if up <= set(self.server.arrived) and down <= set(self.client.arrived):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"missing: {len(up - set(self.server.arrived))} up, "
            f"{len(down - set(self.client.arrived))} down")
