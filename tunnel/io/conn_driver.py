"""The part of the connection-oriented drivers that does not depend on the role.

A connection-oriented transport (TCP) differs from the datagram one (`tunnel/io/driver.py`)
only in how packets reach the endpoint: per connection, framed (tunnel/io/stream.py), with an
address per connection. The endpoint (`Client` or `Server`) is the same object, driven with the
same calls; the connection's peer address plays the part of the datagram's source address.

The numbered flows are tunnel/io/datapath.py's; here they differ only where the link does:
Inbound flow (`_on_connection_readable`):
  1. one `recv_into` into the driver's scratch buffer (StreamConnection.receive cuts packets);
  2.-5. as datapath's: each packet copied into the batch's pooled buffer, handed to
     `endpoint.receive(buf, conn.addr, now)`, TO_TUN to `DeviceOutput` (coalesced), flushed
     when the callback ends; CONSUMED: control work after the batch.
Outbound flow (`_on_device_readable`): `datapath.outbound_batch` with
  3. `_queue_sealed`: the length prefix into the frame's reserved headroom, queued on the
     connection of the address the endpoint returned (bounded, drops counted);
  4. one `send` per touched connection at the end of the batch; a connection the kernel did
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
from tunnel.io.datapath import DeviceOutput, outbound_batch
from tunnel.io.device import PacketDevice
from tunnel.io.driver import DEFAULT_BATCH, DriverStats, Endpoint
from tunnel.io.faults import CallbackFaults
from tunnel.io.link_conn import LinkConnection, queue_sealed
from tunnel.io.offload import COALESCE_RUN_SIZE, check_device_headroom
from tunnel.io.stream import SCRATCH_SIZE, FramingError
from tunnel.io.timer import EndpointTimer
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
        # Buffers the endpoint takes for a connection (memory.py) come from this pool.
        endpoint.iteration.pool = pool
        self.batch = batch
        self.on_event = on_event
        self.stats = ConnStats()
        self.conns: dict[Address, LinkConnection] = {}
        check_device_headroom(pool.frame, device.read_offset)
        # The runs (the receive scratch, a coalesced TUN frame) are blocks of one RunPool,
        # counted with the packet pool's; each is held for the driver's life.
        scratch = SCRATCH_SIZE + pool.frame.buffer_size
        self.runs = RunPool(max(scratch, COALESCE_RUN_SIZE), 2 if device.offload else 1)
        self._scratch = self.runs.acquire().tailroom_view()[:scratch]
        self._timer = EndpointTimer(loop, self._on_timer)
        self._output = DeviceOutput(device, self.runs)
        self._touched: set[LinkConnection] = set()  # by the device batch being sealed
        self._sealing = Buffer(0)  # the device batch's buffer (outbound step 3 prepends)
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
        self._timer.cancel()

    def kick(self) -> None:
        """The endpoint changed from outside (a management command): act on it now."""
        self._after_input(self.loop.time())
        self._end_iteration()

    def close_endpoint(self) -> None:
        now = self.loop.time()
        try:
            self.endpoint.close(now)
            self._flush_control(now)
            self._drain_events()
        finally:
            self._end_iteration()

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
        paused, self._device_paused = self._device_paused, False
        if paused and self._running:
            self.loop.add_reader(self.device.fileno(), self.safe, "the device",
                                 self._on_device_readable)
            self._device_again()

    def _device_again(self) -> None:
        """Packets already out of the kernel (a TSO read-ahead) get no readiness wakeup: a
        batch that stopped at its limit, or a resumed reader, comes back for them at once."""
        if self._running and not self._device_paused and self.device.holds():
            self.loop.call_soon(self.safe, "the device", self._on_device_readable)

    # -- readiness callbacks -------------------------------------------------------------------

    def _on_connection_readable(self, conn: LinkConnection) -> None:
        now = self.loop.time()
        arena = self.arena
        receive = self.endpoint.receive
        output = self._output
        write = output.write
        tallies = output.counts
        packets, dropped = tallies.packets, tallies.dropped
        addr = conn.addr
        counts = [0, 0]  # rx, control
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
                    if verdict == TO_TUN:
                        write(buf)
                    elif verdict == CONSUMED:
                        counts[1] = 1
                except Exception as exc:  # a bug: this packet is lost, the stream goes on
                    self.stats.errors += 1
                    self.faults.record("a packet from a link connection", exc)

            try:
                if not conn.receive(self._scratch, deliver):
                    lost = "connection closed by peer"
            except FramingError as exc:
                self.stats.framing_errors += 1
                lost = str(exc)
            except OSError as exc:
                lost = exc.strerror or str(exc)
        finally:
            output.flush()
            arena.free()
            stats = self.stats
            stats.udp_rx += counts[0]
            dropped = tallies.dropped - dropped
            stats.tun_tx += tallies.packets - packets - dropped
            stats.tun_tx_dropped += dropped
        if counts[1] and not conn.session_seen:
            conn.session_seen = self.has_session(addr)
        if lost is not None:
            self.connection_lost(conn, lost, now)
            self._after_input(now)
        elif counts[1]:
            self._after_input(now)

    def _on_device_readable(self) -> None:
        now = self.loop.time()
        arena = self.arena
        touched = self._touched
        stats = self.stats
        tun_rx = no_route = 0
        try:
            buf = self._sealing = arena.take(self.pool)
            tun_rx, no_route = outbound_batch(
                self.device, buf, self.batch, self.endpoint.encrypt, self._queue_sealed, now,
                self._packet_fault,
            )
            if tun_rx >= self.batch:
                self._device_again()
        finally:
            arena.free()
            stats.tun_rx += tun_rx
            stats.no_route += no_route
        try:
            for conn in touched:
                self._flush_conn(conn)
        finally:
            touched.clear()

    def _queue_sealed(self, _data: memoryview, addr: Address) -> None:
        """Outbound step 3: onto the connection of `addr` (none, or not connected: dropped);
        the length prefix goes into the headroom of the buffer being sealed (`_sealing`)."""
        buf = self._sealing
        conn = self.conns.get(addr)
        stats = self.stats
        if conn is None or not conn.connected:
            stats.udp_tx_dropped += 1
            return
        self._touched.add(conn)
        if queue_sealed(conn, buf):
            stats.udp_tx += 1
        else:
            stats.udp_tx_dropped += 1

    def _packet_fault(self, where: str, exc: Exception) -> None:
        self.stats.errors += 1
        self.faults.record(where, exc)

    def safe(self, where: str, callback: Callable[..., None], *args: Any) -> None:
        """Run a readiness callback; an exception (a bug) is logged, counted and survived."""
        try:
            callback(*args)
        except Exception as exc:
            self.stats.errors += 1
            self.faults.record(where, exc)
        self._end_iteration()

    def _end_iteration(self) -> None:
        """The callback is over: the arenas of the connections it touched are freed."""
        try:
            self.endpoint.end_iteration()
        except Exception as exc:
            self.stats.errors += 1
            self.faults.record("freeing the connections' arenas", exc)

    def _on_timer(self) -> None:
        self._timer.fired()
        now = self.loop.time()
        try:
            self.endpoint.handle_timer(now)
            self._after_input(now)
        except Exception as exc:
            self.stats.errors += 1
            self.faults.record("the timer", exc)
            if self._running and not self._timer.armed:  # never stall: come back soon
                self._timer.arm(now + _FAULT_BACKOFF)
        self._end_iteration()

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
        # Control datagrams, then those sealed in pool buffers for a connection (their arena
        # frees them at the end of the iteration: the connection's queue copies them).
        out: list[tuple[bytes | memoryview, Address]] = [*self.endpoint.datagrams_to_send(now)]
        out += [(buf.data, addr) for buf, addr, _arena in self.endpoint.iteration.to_send()]
        for datagram, addr in out:
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
        self._timer.arm(deadline)

    def next_housekeeping(self) -> float | None:
        """Subclasses: the next time connection housekeeping must run, or None."""
        return None


def set_nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
