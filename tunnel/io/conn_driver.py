"""The part of the connection-oriented drivers that does not depend on the role.

A connection-oriented transport (TCP) differs from the datagram one (`tunnel/io/driver.py`)
only in how packets reach the endpoint: per connection, framed (tunnel/io/stream.py), with an
address per connection. The endpoint (`Client` or `Server`) is the same object, driven with the
same calls; the connection's peer address plays the part of the datagram's source address.

Inbound flow (`_on_connection_readable`):
  1. one `recv_into` into the driver's scratch buffer (StreamConnection.receive cuts packets);
  2. each packet is copied into the batch's pooled buffer (the data channel opens in place and
     needs the frame's tailroom), handed to `endpoint.receive(buf, conn.addr, now)`;
  3. TO_TUN: written to the device (coalesced like the UDP path); CONSUMED: control work after
     the batch (control packets out, events, timer).
Outbound flow (`_on_device_readable`):
  1. a bounded batch of TUN reads into one pooled buffer, each sealed in place
     (`endpoint.encrypt`), its length prefix put into the frame's reserved headroom;
  2. queued on the connection of the address the endpoint returned (bounded, drops counted);
  3. one `send` per touched connection at the end of the batch; a connection the kernel did
     not take everything from waits for writability, the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import BoundsError, Buffer, BufferPool, GcArena, RunPool
from tunnel.io.device import PacketDevice
from tunnel.io.driver import DEFAULT_BATCH, DriverStats, Endpoint
from tunnel.io.faults import CallbackFaults
from tunnel.io.link_conn import LinkConnection, queue_sealed
from tunnel.io.offload import COALESCE_RUN_SIZE, TunCoalescer, check_device_headroom
from tunnel.io.stream import SCRATCH_SIZE, FramingError
from tunnel.io.tun import TunDevice
from tunnel.protocol.events import Event
from tunnel.protocol.verdicts import CONSUMED, TO_TUN

Address = tuple[str, int]

__all__ = ["ConnDriver", "ConnStats"]

_FAULT_BACKOFF = 0.5


@dataclass(slots=True)
class ConnStats(DriverStats):
    """The datagram driver's counters (udp_* count link packets here: queued to or read from
    a connection; udp_tx_dropped: a full queue or no connection), and the connections'."""

    connections_accepted: int = 0
    connections_refused: int = 0  # max-clients reached
    connections_closed: int = 0
    framing_errors: int = 0  # length prefix out of range: connection closed
    half_open_closed: int = 0  # no session within hand-window: connection closed
    connect_failures: int = 0  # client: a connect() that failed or timed out
    connections_open: int = 0
    device_pauses: int = 0  # client: device reads paused until the link took its output


class ConnDriver:
    """Shared by the TCP server driver and the client link driver."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: Endpoint,
        device: PacketDevice,
        pool: BufferPool,
        *,
        on_event: Callable[[Event], None] | None = None,
        batch: int = DEFAULT_BATCH,
        log: logging.Logger | None = None,
    ) -> None:
        self.loop = loop
        self.faults = CallbackFaults(log or logging.getLogger("tunnel"))
        self.endpoint = endpoint
        self.device = device
        self.pool = pool
        self.arena = GcArena()
        self.batch = batch
        self.on_event = on_event
        self.stats = ConnStats()
        self.conns: dict[Address, LinkConnection] = {}
        coalesce = isinstance(device, TunDevice) and device.vnet_hdr
        if isinstance(device, TunDevice):
            check_device_headroom(pool.frame, device.read_offset)
        # The runs (the receive scratch, a coalesced TUN frame) are blocks of one RunPool,
        # counted with the packet pool's; each is held for the driver's life.
        scratch = SCRATCH_SIZE + pool.frame.buffer_size
        self.runs = RunPool(max(scratch, COALESCE_RUN_SIZE), 2 if coalesce else 1)
        self._scratch = self.runs.acquire().tailroom_view()[:scratch]
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._coalescer: TunCoalescer | None = None
        if coalesce:
            assert isinstance(device, TunDevice)
            self._coalescer = TunCoalescer(device.write_frame, run=self.runs.acquire())
        self._running = False
        # Client: while the link has unsent output, the device is not read (stock's p2p loop
        # reads the TUN only when the link buffer is empty), so the kernel queues at the TUN
        # and local senders slow down instead of packets being dropped here. A server never
        # does this: one slow client must not stall the others; it drops per connection.
        self.backpressure = False
        self._device_paused = False

    # -- lifecycle (the Driver's interface) ----------------------------------------------------

    def start(self) -> None:
        self._running = True
        self.loop.add_reader(self.device.fileno(), self.safe, "the device",
                             self._on_device_readable)
        self._after_input(self.loop.time())

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if not self._device_paused:
            self.loop.remove_reader(self.device.fileno())
        self._device_paused = False
        for conn in list(self.conns.values()):
            self._drop_connection(conn, count=False)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def kick(self) -> None:
        """The endpoint changed from outside (a management command): act on it now."""
        self._after_input(self.loop.time())

    def close_endpoint(self) -> None:
        now = self.loop.time()
        self.endpoint.close(now)
        self._flush_control(now)
        self._drain_events()

    # -- connections ---------------------------------------------------------------------------

    def add_connection(self, conn: LinkConnection) -> None:
        self.conns[conn.addr] = conn
        self.stats.connections_open = len(self.conns)
        self.loop.add_reader(conn.fileno(), self.safe, "a link connection",
                             self._on_connection_readable, conn)

    def _drop_connection(self, conn: LinkConnection, *, count: bool = True) -> None:
        """Forget a connection at once (its output is discarded)."""
        if self.conns.get(conn.addr) is conn:
            del self.conns[conn.addr]
            self.stats.connections_open = len(self.conns)
        try:
            fd = conn.fileno()
        except OSError:
            fd = -1
        if fd >= 0:
            self.loop.remove_reader(fd)
            if conn.writer_armed:
                self.loop.remove_writer(fd)
        conn.writer_armed = False
        conn.close()
        if count:
            self.stats.connections_closed += 1
        self._resume_device()

    def connection_lost(self, conn: LinkConnection, reason: str, now: float) -> None:
        """The peer closed, reset or broke the stream. Subclasses tell the endpoint."""
        self._drop_connection(conn)

    def _flush_conn(self, conn: LinkConnection) -> None:
        try:
            done = conn.flush()
        except OSError as exc:
            self.connection_lost(conn, exc.strerror or str(exc), self.loop.time())
            return
        if done:
            if conn.writer_armed:
                self.loop.remove_writer(conn.fileno())
                conn.writer_armed = False
            self._resume_device()
            if conn.closing:
                self._drop_connection(conn)
            return
        if not conn.writer_armed:
            self.loop.add_writer(conn.fileno(), self.safe, "a link connection (send)",
                                 self._flush_conn, conn)
            conn.writer_armed = True
        if self.backpressure and not self._device_paused and self._running:
            self.loop.remove_reader(self.device.fileno())
            self._device_paused = True
            self.stats.device_pauses += 1

    def _resume_device(self) -> None:
        if self._device_paused and self._running:
            self.loop.add_reader(self.device.fileno(), self.safe, "the device",
                                 self._on_device_readable)
        self._device_paused = False

    # -- readiness callbacks -------------------------------------------------------------------

    def _on_connection_readable(self, conn: LinkConnection) -> None:
        now = self.loop.time()
        arena = self.arena
        receive = self.endpoint.receive
        write = self.device.write
        coalescer = self._coalescer
        coalesce = coalescer.write if coalescer is not None else None
        packets = coalescer.packets if coalescer is not None else 0
        dropped = coalescer.dropped if coalescer is not None else 0
        addr = conn.addr
        counts = [0, 0, 0, 0]  # rx, tun_tx, tun_dropped, control
        lost: str | None = None
        try:
            buf = arena.take(self.pool)
            headroom = buf.offset

            def deliver(packet: memoryview) -> None:
                buf.reset(headroom)
                try:
                    buf.append(packet)
                except BoundsError:
                    return  # larger than the frame: cannot be ours (framing checked before)
                counts[0] += 1
                try:
                    verdict = receive(buf, addr, now)
                except Exception as exc:  # a bug: this packet is lost, the stream goes on
                    self.stats.errors += 1
                    self.faults.record("a packet from a link connection", exc)
                    return
                if verdict == TO_TUN:
                    if coalesce is not None:
                        coalesce(buf)
                    elif write(buf.data):
                        counts[1] += 1
                    else:
                        counts[2] += 1
                elif verdict == CONSUMED:
                    counts[3] = 1

            try:
                if not conn.receive(self._scratch, deliver):
                    lost = "connection closed by peer"
            except FramingError as exc:
                self.stats.framing_errors += 1
                lost = str(exc)
            except OSError as exc:
                lost = exc.strerror or str(exc)
        finally:
            if coalescer is not None:
                coalescer.flush()
                counts[1] += coalescer.packets - packets - (coalescer.dropped - dropped)
                counts[2] += coalescer.dropped - dropped
            arena.free()
            stats = self.stats
            stats.udp_rx += counts[0]
            stats.tun_tx += counts[1]
            stats.tun_tx_dropped += counts[2]
        if counts[3] and not conn.session_seen:
            conn.session_seen = self.has_session(addr)
        if lost is not None:
            self.connection_lost(conn, lost, now)
            self._after_input(now)
        elif counts[3]:
            self._after_input(now)

    def _on_device_readable(self) -> None:
        now = self.loop.time()
        arena = self.arena
        encrypt = self.endpoint.encrypt
        conns = self.conns
        touched: set[LinkConnection] = set()
        tun_rx = no_route = queued = dropped = 0
        try:
            buf = arena.take(self.pool)
            headroom = buf.offset
            device = self.device
            if isinstance(device, TunDevice):
                read_packet = device.read_packet
                buf.reset(headroom - device.read_offset)
                room = buf.tailroom_view()
                for _ in range(self.batch):
                    size = read_packet(room)
                    if not size:
                        break
                    buf.reset(headroom)
                    buf.inc_len(size)
                    tun_rx += 1
                    q, d = self._send_sealed(encrypt(buf, now), buf, conns, touched)
                    queued += q
                    dropped += d
                    no_route += 1 - q - d
            else:
                for _ in range(self.batch):
                    buf.reset(headroom)
                    if not device.read_into(buf):
                        break
                    tun_rx += 1
                    q, d = self._send_sealed(encrypt(buf, now), buf, conns, touched)
                    queued += q
                    dropped += d
                    no_route += 1 - q - d
        finally:
            arena.free()
            stats = self.stats
            stats.tun_rx += tun_rx
            stats.no_route += no_route
            stats.udp_tx += queued
            stats.udp_tx_dropped += dropped
        for conn in touched:
            self._flush_conn(conn)

    @staticmethod
    def _send_sealed(
        addr: Address | None, buf: Buffer, conns: dict[Address, LinkConnection],
        touched: set[LinkConnection],
    ) -> tuple[int, int]:
        if addr is None:
            return 0, 0
        conn = conns.get(addr)
        if conn is None or not conn.connected:
            return 0, 1
        touched.add(conn)
        return (1, 0) if queue_sealed(conn, buf) else (0, 1)

    def safe(self, where: str, callback: Callable[..., None], *args: Any) -> None:
        """Run a readiness callback; an exception (a bug) is logged, counted and survived."""
        try:
            callback(*args)
        except Exception as exc:
            self.stats.errors += 1
            self.faults.record(where, exc)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.loop.time()
        try:
            self.endpoint.handle_timer(now)
            self._after_input(now)
        except Exception as exc:
            self.stats.errors += 1
            self.faults.record("the timer", exc)
            if self._running and self._timer is None:  # never stall: come back soon
                self._timer_at = now + _FAULT_BACKOFF
                self._timer = self.loop.call_at(self._timer_at, self._on_timer)

    # -- after every input ---------------------------------------------------------------------

    def _after_input(self, now: float) -> None:
        self._flush_control(now)
        self._drain_events()
        self.after_events(now)
        if self._running:
            self._arm_timer()

    def has_session(self, addr: Address) -> bool:
        """Subclasses: whether the endpoint holds a session for this connection."""
        return False

    def after_events(self, now: float) -> None:
        """Subclasses: connection housekeeping once the endpoint's events are handled."""

    def _flush_control(self, now: float) -> None:
        touched: set[LinkConnection] = set()
        for datagram, addr in self.endpoint.datagrams_to_send(now):
            conn = self.conns.get(addr)
            if conn is None:
                self.stats.udp_tx_dropped += 1
                continue
            if conn.queue_packet(datagram):
                self.stats.udp_tx += 1
            else:
                self.stats.udp_tx_dropped += 1
            touched.add(conn)
        for conn in touched:
            if conn.connected:
                self._flush_conn(conn)

    def _drain_events(self) -> None:
        while (event := self.endpoint.next_event()) is not None:
            self.on_endpoint_event(event)
            if self.on_event is not None:
                self.on_event(event)

    def on_endpoint_event(self, event: Event) -> None:
        """Subclasses: react to an event before the application sees it."""

    def _arm_timer(self) -> None:
        deadline = self.endpoint.get_timer()
        extra = self.next_housekeeping()
        if extra is not None and (deadline is None or extra < deadline):
            deadline = extra
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def next_housekeeping(self) -> float | None:
        """Subclasses: the next time connection housekeeping must run, or None."""
        return None


def set_nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
