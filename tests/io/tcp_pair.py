"""A server and a client over TCP, driven by the real stream drivers in this process: the
`TcpServerDriver` on a real listener on 127.0.0.1, the `ClientLinkDriver` connecting to it,
in-memory packet devices, real TLS (`proto tcp-server` / `tcp-client` as the app builds them).
For tests of the stream I/O layer that need a live tunnel: `async with TcpPair() as t: ...`.
What it shares with the UDP pair (endpoints, sides, exchange) is tests/io/live_pair.py.
"""

from __future__ import annotations

import asyncio
import socket

from tests.io.live_pair import SERVER_VIP, LivePair, ipv4_udp, make_client, make_server
from tunnel.io.client_link import ClientLinkDriver, RemoteLink
from tunnel.io.conn_driver import ConnDriver
from tunnel.io.tcp_server import TcpServerDriver, open_tcp_listener
from tunnel.protocol.client import Client
from tunnel.protocol.server import Server
from tunnel.runtime import Timers, make_frame

__all__ = ["SERVER_VIP", "TcpPair", "ipv4_udp"]

MAX_CONNECTIONS = 16
HAND_WINDOW = 3.0  # seconds a connection may stay without a session


class TcpPair(LivePair):
    """Both ends up and the data channel ready on entry; everything closed on exit.

    `server.sock` is the listener; `server.driver` / `client.driver` are `ConnDriver`s.
    """

    def __init__(self) -> None:
        super().__init__()
        self.server_endpoint: Server
        self.client_endpoint: Client

    async def __aenter__(self) -> TcpPair:
        loop = asyncio.get_running_loop()
        timers = Timers(ping=10, ping_restart=60, hand_window=HAND_WINDOW)
        now = loop.time()
        server = make_server(now, timers, proto="TCPv4_SERVER")
        listener = open_tcp_listener("127.0.0.1", 0, socket.AF_INET)
        client = make_client(now, timers, listener.getsockname()[:2], proto="TCPv4_CLIENT")
        frame = make_frame(stream=True)
        self.server_endpoint, self.client_endpoint = server, client
        self.server = self.side(server, listener, frame, lambda device, pool, on_event:
                                TcpServerDriver(loop, server, server, listener, device, pool,
                                                max_connections=MAX_CONNECTIONS,
                                                hand_window=HAND_WINDOW, on_event=on_event))
        self.client = self.side(client, listener, frame, lambda device, pool, on_event:
                                ClientLinkDriver(loop, client, client,
                                                 [RemoteLink(tcp=True, family=socket.AF_INET)],
                                                 device, pool, on_event=on_event))
        await self.start()
        return self

    def drivers(self) -> tuple[ConnDriver, ConnDriver]:
        return self.server.driver, self.client.driver

    def close(self) -> None:
        for side in (self.server, self.client):
            side.driver.stop()
            side.device.close()
        self.server.sock.close()
