"""Drives a sans-I/O endpoint (`Client` or `Server`) with real I/O on an asyncio loop.

One readiness callback per source: the UDP socket and the packet device. Each callback opens
the connection's `GcArena`, runs one direction of the data path for a bounded batch
(tunnel/io/datapath.py: the numbered inbound and outbound flows), and frees the whole arena at
once when the batch ends (OpenVPN's per-handler `gc_new()`/`gc_free()` in forward.c). One
timer per endpoint, re-armed from `get_timer()`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Final, Protocol

from core import Buffer, BufferPool, GcArena, RunPool
from tunnel.io.backlog import SendBacklog
from tunnel.io.datapath import (
    CONTROL,
    REFUSED,
    DeviceOutput,
    UdpLink,
    inbound_batch,
    outbound_batch,
)
from tunnel.io.device import PacketDevice
from tunnel.io.driver_stats import DriverStats as DriverStats
from tunnel.io.faults import CallbackFaults
from tunnel.io.gro_rows import ROWS_RUN_SIZE as GRO_ROWS_SIZE
from tunnel.io.gro_rows import attach_run_opener, run_opener_wanted
from tunnel.io.gso import GRO_BUFFER_SIZE, GSO_MAX_BYTES, GsoSender, enable_gro
from tunnel.io.lane import attach_lane, lane_applies
from tunnel.io.offload import COALESCE_RUN_SIZE, check_device_headroom
from tunnel.io.timer import EndpointTimer
from tunnel.io.tso_rows import ROWS_RUN_SIZE as TSO_ROWS_SIZE
from tunnel.io.tso_rows import attach_super_sender, super_sender_wanted
from tunnel.protocol.events import Event
from tunnel.protocol.memory import IterationArenas

Address = tuple[str, int]

# Packets drained per readiness callback: large enough to amortise the callback, small enough
# that the other direction and the timers are not starved. Measured (bench_netns, one run):
# 32 -> 64 -> 128 gave TCP-1 2142 -> 2183 -> 2294 Mbit/s; UDP-64 within noise.
DEFAULT_BATCH = 128
# The driver's runs (a GRO read, a GSO send, a coalesced TUN frame) are blocks of one RunPool.
RUN_SIZE: Final = max(GRO_BUFFER_SIZE, GSO_MAX_BYTES, COALESCE_RUN_SIZE)
# After an exception in the timer or the control round, the timer comes back no sooner than
# this: a bug that fails every time costs a log line now and then, not a busy loop.
_FAULT_BACKOFF = 0.5


class Endpoint(Protocol):
    """What `Client` and `Server` both offer."""

    def receive(self, buf: Buffer, addr: Address, now: float) -> int: ...
    def encrypt(self, buf: Buffer, now: float) -> Address | None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> Event | None: ...
    def close(self, now: float) -> None: ...
    def end_iteration(self) -> None: ...

    # The per-connection arenas of an iteration (tunnel/protocol/memory.py); the driver sets
    # its pool and sends the pooled datagrams queued there.
    @property
    def iteration(self) -> IterationArenas: ...


class Driver:
    """Owns nothing but the glue: the socket, device and pool are passed in."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: Endpoint,
        sock: socket.socket,
        device: PacketDevice,
        pool: BufferPool,
        *,
        on_event: Callable[[Event], None] | None = None,
        batch: int = DEFAULT_BATCH,
        log: logging.Logger | None = None,
        runs: RunPool | None = None,
    ) -> None:
        """`runs`: where the driver's run buffers come from (default: a pool of its own with
        one block per run it needs; each is acquired here and held for the driver's life)."""
        self.loop = loop
        self.endpoint = endpoint
        self.sock = sock
        self.device = device
        self.pool = pool
        self.arena = GcArena()
        # Buffers the endpoint takes for a connection come from this pool, in that
        # connection's arena, freed when the callback ends (`end_iteration`).
        endpoint.iteration.pool = pool
        # Pooled datagrams the kernel refused with EAGAIN wait here (detached) for writability.
        self.backlog: SendBacklog[Buffer] = SendBacklog(
            lambda buf, addr: sock.sendto(buf.data, addr), release=pool.release)
        # Control datagrams refused with EAGAIN (a flood fills the send buffer) wait too.
        self.control_backlog: SendBacklog[bytes] = SendBacklog(sock.sendto)
        self._writing = False
        self.batch = batch
        self.on_event = on_event
        self.stats = DriverStats()
        self.faults = CallbackFaults(log or logging.getLogger("tunnel"))
        self._timer = EndpointTimer(loop, self._on_timer)
        check_device_headroom(pool.frame, device.read_offset)
        # The runs are pool memory, counted with the packet pool's (status, metrics): GSO
        # send, GRO read, the coalescer's frame (offload), and the rows of the batch paths
        # (a GRO run opened in rows, a TSO super-packet sealed in rows), larger blocks then.
        rows = int(run_opener_wanted(endpoint, device.offload)) + int(
            super_sender_wanted(device, endpoint))
        # The lone-packet lane's buffer is one more (tunnel/io/lane.py), where it applies.
        lane = int(lane_applies(endpoint, device, sock))
        if runs is None:
            size = max(RUN_SIZE, GRO_ROWS_SIZE, TSO_ROWS_SIZE) if rows else RUN_SIZE
            runs = RunPool(size, (3 if device.offload else 2) + rows + lane)
        self.runs = runs
        # GSO: the sealed datagrams of one device batch leave in one sendmsg per destination.
        self._gso = GsoSender(sock, run=self.runs.acquire())
        # GRO: the kernel hands over runs of datagrams; they land here and are cut apart.
        enable_gro(sock)
        self._link = UdpLink(sock, self.runs.acquire().tailroom_view()[:GRO_BUFFER_SIZE])
        # To the device: consecutive TCP segments (UDP datagrams) of a flow enter the kernel
        # as one packet where the device takes virtio-net frames.
        self._output = DeviceOutput(device, self.runs)
        # TSO: a super-packet read from the device is cut, sealed and sent as one run
        # (tunnel/io/tso_rows.py), where the device hands them over and the endpoint can.
        # GRO runs of data from the peer opened in one batch (tunnel/io/gro_rows.py).
        self._runs = attach_run_opener(endpoint, self._output.coalescer, self.runs)
        self._supers = attach_super_sender(
            device, endpoint, self._gso, self._fault, batch * 2, self.runs)
        # The lone-packet lane (tunnel/io/lane.py): an idle tunnel's packet in one or two
        # native calls per hop, where it applies (UDP, a real TUN, libcrypto's AEAD); over a
        # TSO device it hands super-packets to the TSO path.
        self._lane = (attach_lane(endpoint, device, sock, pool, self.runs, self._link,
                                  self._gso, self._output, self.stats)
                      if lane else None)
        if self._lane is not None:
            self.faults.log.info(
                "data path: lone packets take the native lane (read, seal/open, send in one call)")
        self._running = False
        # What the callbacks call, bound once: a bound method made per call is an object per
        # wakeup, and on an idle tunnel each wakeup runs cold (every line counts).
        self._receive = endpoint.receive
        self._encrypt = endpoint.encrypt
        self._end = endpoint.end_iteration
        self._on_fault = self._fault
        self._queue = self._gso.add
        self._send = self._gso.send
        if self._lane is not None:
            # The lane's callbacks are the readiness callbacks; they go on to these.
            self._lane.bind(time=loop.time, device_batch=self._device_batch,
                            socket_batch=self._socket_batch, fault=self._fault, end=self._end,
                            after_input=self._after_input, drain_events=self._drain_events,
                            touched=endpoint.iteration.touched)

    def start(self) -> None:
        self._running = True
        lane = self._lane
        self.loop.add_reader(self.sock.fileno(), self._on_socket_readable if lane is None
                             else lane.link_readable)
        self.loop.add_reader(self.device.fileno(), self._on_device_readable if lane is None
                             else lane.device_readable)
        self._after_input(self.loop.time())

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self.loop.remove_reader(self.sock.fileno())
        self.loop.remove_reader(self.device.fileno())
        if self._writing:
            self.loop.remove_writer(self.sock.fileno())
            self._writing = False
        self.backlog.clear()
        self.control_backlog.clear()
        self._timer.cancel()

    def close_endpoint(self) -> None:
        """Tell the peer(s) we leave (explicit-exit-notify) and flush that last word."""
        now = self.loop.time()
        try:
            self.endpoint.close(now)
            self._flush_control(now)
            self._drain_events()
        finally:
            self._end_iteration()

    def kick(self) -> None:
        """Something outside the driver changed the endpoint (a management command): send
        what it queued, hand out its events and re-arm the timer now."""
        self._after_input(self.loop.time())
        self._end_iteration()

    # -- readiness callbacks -----------------------------------------------------------------

    def _on_socket_readable(self) -> None:
        # The readiness callback without a lane (a lane's own goes on to `_socket_batch`).
        self._socket_batch(None)

    def _socket_batch(self, pre: tuple[int, int, Address, bool] | None) -> None:
        """The socket callback's batch path; `pre`: a datagram the lane read and left in its
        buffer (tunnel/io/lane.py), or None."""
        try:
            now = self.loop.time()
            arena = self.arena
            lane = self._lane
            output = self._output
            stats = self.stats
            counts = output.counts
            packets, dropped = counts.packets, counts.dropped
            rx = malformed = kinds = 0
            try:
                # One buffer serves the whole batch: every datagram is finished with (written to
                # the device, which copies, or consumed) before the next, so it is re-armed instead
                # of taken from the pool per packet.
                buf = arena.take(self.pool) if pre is None else lane.buf  # type: ignore[union-attr]
                rx, malformed, kinds = inbound_batch(
                    self._link, buf, self.batch, self._receive, output.write, now,
                    self._on_fault, self._runs, output.write_alone, pre,
                )
            finally:
                output.flush()
                arena.free()
                stats.udp_rx += rx
                if lane is not None:
                    lane.link_busy = rx > 1
                stats.malformed += malformed
                dropped = counts.dropped - dropped
                stats.tun_tx += counts.packets - packets - dropped
                stats.tun_tx_dropped += dropped
            if kinds & CONTROL:
                # Data packets queue nothing and raise no event; the keepalive deadlines they push
                # back are re-read when the timer fires. So a data-only batch skips the control
                # work (measured: ~30 us a callback, which on an idle tunnel is latency).
                self._after_input(now)
            elif kinds & REFUSED:
                try:
                    self._drain_events()  # the drop reports only: no control work
                except Exception as exc:
                    self._fault("handling an event", exc)
        except Exception as exc:
            self._fault("reading from the link", exc)
        try:  # the arenas of the connections this callback touched (_end_iteration inline)
            self._end()
        except Exception as exc:
            self._fault("freeing the connections' arenas", exc)

    def _on_device_readable(self) -> None:
        # The readiness callback without a lane (a lane's own goes on to `_device_batch`).
        self._device_batch(0)

    def _device_batch(self, first: int) -> None:
        """The device callback's batch path; `first`: a packet the lane read and left in its
        buffer (its size), or 0."""
        try:
            now = self.loop.time()
            lane = self._lane
            arena = self.arena
            gso = self._gso
            stats = self.stats
            tun_rx = no_route = 0
            sent, dropped = gso.sent, gso.dropped
            supers = self._supers
            segments = 0  # the super-packets' segments sealed before this callback
            if supers is not None:
                supers.begin(now)
                segments = supers.segments
            try:
                # One buffer for the batch, as above: `queue` copies the sealed datagram into the
                # GSO run, so the buffer is free again at once.
                # (A packet the lane read is in the lane's buffer: the batch goes on from it.)
                buf = lane.buf if first and lane is not None else arena.take(self.pool)
                tun_rx, no_route = outbound_batch(
                    self.device, buf, self.batch, self._encrypt, self._queue, now,
                    self._on_fault, self._send, first, first > 0 and lane is not None and lane.lone,
                )
                gso.flush()
                if tun_rx >= self.batch and self.device.holds():
                    # Stopped at the limit with packets already out of the kernel (a TSO
                    # read-ahead): no wakeup would come for them, so come back at once.
                    self.loop.call_soon(self._device_batch, 0)
            finally:
                if supers is not None:
                    tun_rx += supers.segments - segments
                arena.free()
                stats.tun_rx += tun_rx
                if lane is not None:
                    # The lane's next wakeup goes straight here under load, and while the
                    # device still holds frames it read ahead (TSO), which go before any
                    # the lane would read: asked here, after the batch, not before the lane's
                    # read, where a cold call was ~20 us of an idle hop (docs/PERFORMANCE.md).
                    lane.device_busy = tun_rx > 1 or self.device.holds()
                stats.no_route += no_route
                stats.udp_tx += gso.sent - sent
                stats.udp_tx_dropped += gso.dropped - dropped
        except Exception as exc:
            self._fault("reading from the device", exc)
        try:  # the arenas of the connections this callback touched (_end_iteration inline)
            self._end()
        except Exception as exc:
            self._fault("freeing the connections' arenas", exc)

    def _on_timer(self) -> None:
        self._timer.fired()
        now = self.loop.time()
        try:
            self.endpoint.handle_timer(now)
        except Exception as exc:  # a bug; the timer must go on, or every session stalls
            self._fault("the timer", exc)
            # A timer that fails again at once must not spin: come back a little later.
            self._after_input(now, timer_floor=now + _FAULT_BACKOFF)
            self._end_iteration()
            return
        self._after_input(now)
        self._end_iteration()

    def _guarded(self, callback: Callable[[], None], where: str) -> Callable[[], None]:
        """`callback` as a readiness callback that survives any exception it raises (the
        rare ones; the two hot ones carry their own try and end the iteration themselves)."""

        def run() -> None:
            try:
                callback()
            except Exception as exc:
                self._fault(where, exc)
            self._end_iteration()

        return run

    def _end_iteration(self) -> None:
        """The callback is over: the arenas of the connections it touched are freed."""
        try:
            self.endpoint.end_iteration()
        except Exception as exc:  # a lifetime bug: logged and counted, the loop goes on
            self._fault("freeing the connections' arenas", exc)

    def _on_socket_writable(self) -> None:
        """The socket takes datagrams again: send the backlog; stop watching once empty."""
        control, backlog = self.control_backlog, self.backlog
        sent = control.sent + backlog.sent
        dropped = control.dropped + backlog.dropped
        # Control first: an ACK or a handshake record matters more than one more data packet.
        if control.flush() and backlog.flush() and self._writing:
            self.loop.remove_writer(self.sock.fileno())
            self._writing = False
        self.stats.udp_tx += control.sent + backlog.sent - sent
        self.stats.udp_tx_dropped += control.dropped + backlog.dropped - dropped

    def _fault(self, where: str, exc: Exception) -> None:
        self.stats.errors += 1
        self.faults.record(where, exc)

    # -- after every input: control datagrams, events, the timer ---------------------------

    def _after_input(self, now: float, timer_floor: float | None = None) -> None:
        try:
            self._flush_control(now)
        except Exception as exc:
            self._fault("sending control datagrams", exc)
            timer_floor = now + _FAULT_BACKOFF
        try:
            self._drain_events()
        except Exception as exc:
            self._fault("handling an event", exc)
        if self._running:
            try:
                self._arm_timer(timer_floor)
            except Exception as exc:
                self._fault("arming the timer", exc)
                self._timer.arm(now + _FAULT_BACKOFF)

    def _flush_control(self, now: float) -> None:
        control = self.control_backlog
        sent, dropped = control.sent, control.dropped
        for datagram, addr in self.endpoint.datagrams_to_send(now):
            control.offer(datagram, addr)  # sent now, or kept on EAGAIN for writability
        self.stats.udp_tx += control.sent - sent
        self.stats.udp_tx_dropped += control.dropped - dropped
        if control.pending:
            self._watch_writable()
        pooled = self.endpoint.iteration.to_send()
        if pooled:
            # Datagrams sealed in pool buffers for a connection (client-to-client): sent now,
            # or on EAGAIN detached from the connection's arena and kept for writability.
            backlog = self.backlog
            sent, dropped = backlog.sent, backlog.dropped
            for buf, addr, arena in pooled:
                backlog.offer(buf, addr, arena.detach)
            self.stats.udp_tx += backlog.sent - sent
            self.stats.udp_tx_dropped += backlog.dropped - dropped
            if backlog.pending:
                self._watch_writable()

    def _watch_writable(self) -> None:
        if not self._writing and self._running:
            self.loop.add_writer(self.sock.fileno(), self._guarded(
                self._on_socket_writable, "writing to the link"))
            self._writing = True

    def _drain_events(self) -> None:
        while (event := self.endpoint.next_event()) is not None:
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception as exc:  # one event's handler failing loses only that one
                    self._fault(f"handling the event {type(event).__name__}", exc)

    def _arm_timer(self, floor: float | None = None) -> None:
        deadline = self.endpoint.get_timer()
        if floor is not None and deadline is not None and deadline < floor:
            deadline = floor
        self._timer.arm(deadline)
