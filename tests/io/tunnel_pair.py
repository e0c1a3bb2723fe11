"""A server and a client driven by the real Driver in this process: real UDP sockets on
127.0.0.1, in-memory packet devices (optionally speaking virtio-net like a TUN with
IFF_VNET_HDR: the fake TUN), real TLS. For tests of the I/O layer that need a live
tunnel (fuzzing, faults): `async with TunnelPair() as t: ...`. What it shares with the TCP
pair (endpoints, sides, exchange) is tests/io/live_pair.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from tests.io.live_pair import (
    SERVER_VIP,
    LivePair,
    MakeDriver,
    Side,
    ipv4_udp,
    make_client,
    make_server,
)
from tests.io.live_pair import tls as _tls
from tunnel.io.driver import Driver, Endpoint
from tunnel.io.udp import open_udp_socket
from tunnel.runtime import Timers, make_frame

__all__ = ["SERVER_VIP", "Side", "TunnelPair", "_tls", "ipv4_udp"]


class TunnelPair(LivePair):
    """Both ends up and the data channel ready on entry; everything closed on exit."""

    def __init__(self, *, server_wrap: type | None = None, offload: bool = False,
                 capacity: int = 1024,
                 open_socket: Callable[[], socket.socket] | None = None) -> None:
        """`offload`: both devices behave as TUNs with IFF_VNET_HDR (the driver coalesces);
        `open_socket`: how each side's UDP socket on 127.0.0.1 is made (default: here; a
        test may make them in a namespace of its own, with a small send buffer)."""
        super().__init__(payload_only=offload)
        self._open_socket = open_socket or (lambda: open_udp_socket("127.0.0.1", 0))
        self._server_wrap = server_wrap
        self._offload = offload
        self._capacity = capacity

    async def __aenter__(self) -> TunnelPair:
        loop = asyncio.get_running_loop()
        timers = Timers(ping=10, ping_restart=60)
        now = loop.time()
        server_ep: Endpoint = make_server(now, timers)
        if self._server_wrap is not None:
            server_ep = self._server_wrap(server_ep)
        server_sock = self._open_socket()
        client_sock = self._open_socket()
        client_ep: Endpoint = make_client(now, timers, server_sock.getsockname()[:2])
        frame = make_frame()
        # (`offload` only when asked: scripts/bench_wakeup.py runs this against older trees.)
        device = {"capacity": self._capacity, **({"offload": True} if self._offload else {})}

        def udp_driver(endpoint: Endpoint, sock: socket.socket) -> MakeDriver:
            return lambda dev, pool, on_event: Driver(loop, endpoint, sock, dev, pool,
                                                      on_event=on_event)

        self.server = self.side(server_ep, server_sock, frame,
                                udp_driver(server_ep, server_sock), **device)
        self.client = self.side(client_ep, client_sock, frame,
                                udp_driver(client_ep, client_sock), **device)
        await self.start()
        return self

    def close(self) -> None:
        for side in (self.server, self.client):
            side.driver.stop()
            side.sock.close()
            side.device.close()
