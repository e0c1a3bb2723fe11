"""The client's connection-oriented driver: one link at a time, following `Client`'s remote.

The `Client` decides which remote to talk to and when to move on (connect-retry, server poll
timeout, a lost connection); this driver only makes the link for it. Each new session gets a new
link, of the transport its remote's entry asks for: a TCP connection (framed, see
tunnel/io/stream.py) or a connected UDP socket. So a profile that lists a UDP remote and then a
TCP one falls over from one to the other as stock does, with one protocol engine.

A TCP connect is non-blocking; packets the session produces meanwhile wait in the connection's
bounded queue. A connect that fails, or a connection the server closes, is reported to the
`Client` as a lost link (`Client.connection_lost`), which restarts on the next remote after
the connect-retry pause; a connect that hangs is ended by the server poll timeout
(`connect-timeout`), since the session has heard nothing from the server by then.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core import BufferPool
from tunnel.io.conn_driver import ConnDriver, set_nodelay
from tunnel.io.device import PacketDevice
from tunnel.io.driver import Endpoint
from tunnel.io.link_conn import DatagramConnection, LinkConnection
from tunnel.io.stream import LENGTH_PREFIX, StreamConnection
from tunnel.protocol.client import Client
from tunnel.protocol.events import Event
from tunnel.protocol.session import Session

__all__ = ["ClientLinkDriver", "RemoteLink"]

_UDP_BUFFER = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RemoteLink:
    """How to reach `Client.remotes[i]`: its transport and address family."""

    tcp: bool
    family: int
    bind: tuple[str, int] | None = None  # local address to bind, if asked


class ClientLinkDriver(ConnDriver):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: Endpoint,
        client: Client,
        links: Sequence[RemoteLink],
        device: PacketDevice,
        pool: BufferPool,
        *,
        queue_limit: int = 64,
        nodelay: bool = False,
        on_event: Callable[[Event], None] | None = None,
        on_link: Callable[[RemoteLink, tuple[str, int]], None] | None = None,
        on_connected: Callable[[tuple[str, int]], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        super().__init__(loop, endpoint, device, pool, on_event=on_event, log=log)
        if len(links) != len(client.remotes):
            raise ValueError("one RemoteLink per remote")
        self.client = client
        self.links = list(links)
        self.nodelay = nodelay
        self.on_link = on_link
        self.on_connected = on_connected
        self.max_packet = pool.frame.buffer_size - pool.frame.headroom
        # With backpressure the queue holds at most what one device batch adds after the
        # link stopped taking data; drops are left for control packets beyond that.
        self.backpressure = True
        self.queue_bytes = max(queue_limit, 2 * self.batch) * (self.max_packet + LENGTH_PREFIX)
        self._session: Session | None = None
        self.conn: LinkConnection | None = None

    @property
    def link(self) -> RemoteLink:
        return self.links[self.client.remote_index]

    def _flush_control(self, now: float) -> None:
        self._follow_session(now)
        super()._flush_control(now)

    def _follow_session(self, now: float) -> None:
        """A new session (the first, or after a restart) gets a new link to its remote."""
        session = self.client.session
        if session is self._session or session.closed is not None:
            return
        self._session = session
        if self.conn is not None:
            self._drop_connection(self.conn, count=False)
            self.conn = None
        link = self.link
        addr = session.remote_addr
        if self.on_link is not None:
            self.on_link(link, addr)
        try:
            conn = self._open(link, addr, now)
        except OSError as exc:
            self.stats.connect_failures += 1
            self.client.connection_lost(now, f"cannot connect to {addr[0]}:{addr[1]}: "
                                             f"{exc.strerror or exc}")
            return
        self.conn = conn
        self.add_connection(conn)
        if not conn.connected:
            self.loop.add_writer(conn.fileno(), self.safe, "a TCP connect",
                                 self._on_connected, conn)
            conn.writer_armed = True

    def _open(self, link: RemoteLink, addr: tuple[str, int], now: float) -> LinkConnection:
        kind = socket.SOCK_STREAM if link.tcp else socket.SOCK_DGRAM
        sock = socket.socket(link.family, kind)
        try:
            sock.setblocking(False)
            if link.bind is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(link.bind)
            if not link.tcp:
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    sock.setsockopt(socket.SOL_SOCKET, option, _UDP_BUFFER)
                sock.connect(addr)
                return DatagramConnection(sock, addr, now)
            if self.nodelay:
                set_nodelay(sock)
            err = sock.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, os.strerror(err))
        except BaseException:
            sock.close()
            raise
        return StreamConnection(
            sock, addr, max_packet=self.max_packet, queue_limit=self.queue_bytes, now=now,
            connected=err == 0,
        )

    def _on_connected(self, conn: LinkConnection) -> None:
        now = self.loop.time()
        if conn.writer_armed:
            self.loop.remove_writer(conn.fileno())
            conn.writer_armed = False
        assert isinstance(conn, StreamConnection)
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.stats.connect_failures += 1
            where = f"{conn.addr[0]}:{conn.addr[1]}"
            self.connection_lost(conn, f"TCP: connect to {where} failed: {os.strerror(err)}", now)
            self._after_input(now)
            return
        conn.connected = True
        if self.on_connected is not None:
            self.on_connected(conn.addr)
        self._flush_conn(conn)

    def connection_lost(self, conn: LinkConnection, reason: str, now: float) -> None:
        super().connection_lost(conn, reason, now)
        if conn is self.conn:
            self.conn = None
            self.client.connection_lost(now, reason)
