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
    # HTTP CONNECT proxy (TCP only): where to connect, and the request that opens the tunnel.
    proxy_address: tuple[str, int] | None = None
    proxy_request: bytes = b""


# A proxy's answer larger than this is not an HTTP response header we accept.
_PROXY_HEADER_MAX = 16 * 1024


def connect_request(target: str, port: int, *, version: str = "1.0",
                    agent: str | None = None, headers: Sequence[tuple[str, str]] = (),
                    basic: tuple[str, str] | None = None) -> bytes:
    """proxy.c establish_http_proxy_passthru(): CONNECT host:port HTTP/x, Host (1.1),
    User-Agent, custom headers, Proxy-Authorization: Basic."""
    import base64

    lines = [f"CONNECT {target}:{port} HTTP/{version}"]
    if version == "1.1":
        lines.append(f"Host: {target}")
    if agent:
        lines.append(f"User-Agent: {agent}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    if basic is not None:
        token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


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
        self._proxy_reply = bytearray()

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
            err = sock.connect_ex(link.proxy_address or addr)
            if link.proxy_address is not None and err == 0:
                err = errno.EINPROGRESS  # the proxy dialogue starts in _on_connected
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
        link = self.link
        if link.proxy_address is not None:
            self._start_proxy(conn, link)
            return
        conn.connected = True
        if self.on_connected is not None:
            self.on_connected(conn.addr)
        self._flush_conn(conn)

    # -- HTTP CONNECT ------------------------------------------------------------------------

    def _start_proxy(self, conn: StreamConnection, link: RemoteLink) -> None:
        """Send the CONNECT request; the answer is read by `_on_proxy_readable`."""
        now = self.loop.time()
        try:
            conn.sock.send(link.proxy_request)  # a few hundred bytes: the socket takes them
        except OSError as exc:
            self.connection_lost(conn, f"HTTP proxy: {exc.strerror or exc}", now)
            self._after_input(now)
            return
        self._proxy_reply = bytearray()
        self.loop.remove_reader(conn.fileno())
        self.loop.add_reader(conn.fileno(), self.safe, "the HTTP proxy",
                             self._on_proxy_readable, conn)

    def _on_proxy_readable(self, conn: StreamConnection) -> None:
        now = self.loop.time()
        try:
            chunk = conn.sock.recv(_PROXY_HEADER_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            chunk = b""
            reason = f"HTTP proxy: {exc.strerror or exc}"
        else:
            reason = "HTTP proxy closed the connection before answering"
        reply = self._proxy_reply
        reply += chunk
        end = reply.find(b"\r\n\r\n")
        if chunk and end < 0 and len(reply) < _PROXY_HEADER_MAX:
            return  # more of the header to come
        if end < 0:
            if chunk:
                reason = "HTTP proxy sent an over-long or malformed answer"
            self.connection_lost(conn, reason, now)
            self._after_input(now)
            return
        status = bytes(reply[: reply.find(b"\r\n")]).decode("latin-1")
        parts = status.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or parts[1] != "200":
            self.connection_lost(conn, f"HTTP proxy returned bad status: {status!r}", now)
            self._after_input(now)
            return
        if len(reply) > end + 4:
            # The server spoke first through the tunnel: hand those bytes to the framing.
            conn.prime(bytes(reply[end + 4 :]))
        self.loop.remove_reader(conn.fileno())
        self.loop.add_reader(conn.fileno(), self.safe, "a link connection",
                             self._on_connection_readable, conn)
        conn.connected = True
        if self.on_connected is not None:
            self.on_connected(conn.addr)
        self._flush_conn(conn)

    def connection_lost(self, conn: LinkConnection, reason: str, now: float) -> None:
        super().connection_lost(conn, reason, now)
        if conn is self.conn:
            self.conn = None
            self.client.connection_lost(now, reason)
