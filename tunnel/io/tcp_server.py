"""`proto tcp-server`: many clients on one listening socket (OpenVPN's mtcp.c), same `Server`.

Each accepted connection is one client; its peer address is the address the `Server` knows it
by, so the protocol engine (cookie, sessions, peer-ids, push) runs unchanged. What TCP adds:

- `max-clients` bounds the connections: one more is accepted and closed at once, counted
  (mtcp.c: "new incoming connection would exceed maximum number of clients");
- a connection without an established session after `hand-window` seconds is closed and
  counted (a client that connects and stays silent, or stalls its handshake);
- a length prefix the frame does not allow closes the connection (there is no resync in a
  byte stream); so does garbage the protocol rejects for longer than the hand-window;
- when a session ends, its connection is closed once its last packets are sent; when a
  connection ends, its session is closed (OpenVPN: a client instance's connection reset);
- the accept loop drains a bounded batch per readiness callback, and every connection's output
  queue is bounded (tcp-queue-limit), so neither a flood of connections nor a slow reader
  makes the server buffer without bound.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from core import BufferPool
from tunnel.io.conn_driver import ConnDriver, set_nodelay
from tunnel.io.device import PacketDevice
from tunnel.io.driver import Endpoint
from tunnel.io.link_conn import LinkConnection
from tunnel.io.stream import LENGTH_PREFIX, StreamConnection
from tunnel.protocol.events import Event, SessionClosed
from tunnel.protocol.server import Server

__all__ = ["TcpServerDriver", "open_tcp_listener"]

ACCEPTS_PER_CALLBACK = 64
_HOUSEKEEPING_PERIOD = 1.0
LISTEN_BACKLOG = 1024
# After a session ended, its connection gets this long to send its last words.
_LINGER = 2.0


def open_tcp_listener(host: str, port: int, family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"TCP port {host}:{port} is already in use") from None
            raise
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class TcpServerDriver(ConnDriver):
    """`endpoint` is what receives the packets (the Server);
    `server` the Server itself, whose session table tells which connections have a session."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: Endpoint,
        server: Server,
        listener: socket.socket,
        device: PacketDevice,
        pool: BufferPool,
        *,
        max_connections: int,
        hand_window: float,
        queue_limit: int = 64,
        nodelay: bool = False,
        on_event: Callable[[Event], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        super().__init__(loop, endpoint, device, pool, on_event=on_event, log=log)
        self.server = server
        self.sock = listener
        self.max_connections = max_connections
        self.hand_window = hand_window
        self.nodelay = nodelay
        # The largest packet a client may send us: a whole data packet of this frame.
        self.max_packet = pool.frame.buffer_size - pool.frame.headroom
        self.queue_bytes = queue_limit * (self.max_packet + LENGTH_PREFIX)
        self._next_sweep: float | None = None
        self._sessions_closed: list[tuple[str, int]] = []  # their connections close next

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self.safe, "the TCP listener",
                             self._on_listener_readable)
        super().start()

    def stop(self) -> None:
        if self._running:
            self.loop.remove_reader(self.sock.fileno())
        super().stop()

    # -- accepting -----------------------------------------------------------------------------

    def _on_listener_readable(self) -> None:
        now = self.loop.time()
        for _ in range(ACCEPTS_PER_CALLBACK):
            try:
                sock, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # EMFILE/ENFILE, ECONNABORTED: nothing to accept now; try on the next callback.
                break
            if len(self.conns) >= self.max_connections:
                self.stats.connections_refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            if self.nodelay:
                set_nodelay(sock)
            peer = (str(addr[0]), int(addr[1]))
            old = self.conns.get(peer)
            if old is not None:  # cannot happen for live TCP; a stale entry goes
                self._drop_connection(old)
            conn = StreamConnection(
                sock, peer, max_packet=self.max_packet, queue_limit=self.queue_bytes, now=now
            )
            self.stats.connections_accepted += 1
            self.add_connection(conn)
        self._arm_timer()

    # -- endpoint coupling ---------------------------------------------------------------------

    def connection_lost(self, conn: LinkConnection, reason: str, now: float) -> None:
        super().connection_lost(conn, reason, now)
        self.server.connection_lost(conn.addr, now, reason)

    def has_session(self, addr: tuple[str, int]) -> bool:
        return self.server.peer_at(addr) is not None

    def on_endpoint_event(self, event: Event) -> None:
        if isinstance(event, SessionClosed) and event.address is not None:
            self._sessions_closed.append(event.address)

    def after_events(self, now: float) -> None:
        if self._sessions_closed:
            closed, self._sessions_closed = self._sessions_closed, []
            peer_at = self.server.peer_at
            for addr in closed:  # the connections of the sessions that ended, not all of them
                conn = self.conns.get(addr)
                if (conn is not None and conn.session_seen and peer_at(addr) is None
                        and not conn.closing):
                    # Its session ended: close once the last packets are out.
                    conn.closing = True
                    conn.created_at = now  # the linger starts now
                    if not conn.pending:
                        self._drop_connection(conn)
        if self._next_sweep is None or now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + _HOUSEKEEPING_PERIOD
        peer_at = self.server.peer_at
        limit = self.hand_window
        for conn in list(self.conns.values()):
            entry = peer_at(conn.addr)
            session = entry.session if entry is not None else None
            if session is not None:
                conn.session_seen = True
                if session.send_key is not None:
                    continue
            if conn.closing:
                if now - conn.created_at >= _LINGER:
                    self._drop_connection(conn)
                continue
            if now - conn.created_at >= limit:
                # No established session within hand-window: a silent or stalled client.
                self.stats.half_open_closed += 1
                self._drop_connection(conn)
                if session is not None:
                    self.server.connection_lost(conn.addr, now, "handshake not done in time")

    def next_housekeeping(self) -> float | None:
        return self._next_sweep if self.conns else None
