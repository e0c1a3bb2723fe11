"""Drives a sans-I/O endpoint (`Client` or `Server`) with real I/O on an asyncio loop.

One readiness callback per source: the UDP socket and the packet device. Each callback opens
the connection's `GcArena`, drains a bounded batch into pooled buffers, hands each to the
protocol, and frees the whole arena at once when the batch ends (OpenVPN's per-handler
`gc_new()`/`gc_free()` in forward.c). One timer per endpoint, re-armed from `get_timer()`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import termios
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from core import BoundsError, Buffer, BufferPool, GcArena, RunPool
from tunnel.io.device import PacketDevice
from tunnel.io.faults import CallbackFaults
from tunnel.io.gso import (
    GRO_BUFFER_SIZE,
    GRO_CMSG_SPACE,
    GSO_MAX_BYTES,
    GsoSender,
    enable_gro,
    gro_segment_size,
)
from tunnel.io.offload import COALESCE_RUN_SIZE, TunCoalescer, check_device_headroom
from tunnel.io.tun import TunDevice
from tunnel.protocol.events import Event
from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN

Address = tuple[str, int]

# Packets drained per readiness callback: large enough to amortise the callback, small enough
# that the other direction and the timers are not starved. Measured (bench_netns, one run):
# 32 -> 64 -> 128 gave TCP-1 2142 -> 2183 -> 2294 Mbit/s; UDP-64 within noise.
DEFAULT_BATCH = 128
# Per-packet constants as plain ints: `flags & socket.MSG_TRUNC` calls enum.Flag.__and__ in
# Python and builds a flag object (~4 us a datagram, measured).
_MSG_TRUNC: Final = int(socket.MSG_TRUNC)
_FIONREAD: Final = termios.FIONREAD
_NOTHING_QUEUED: Final = bytes(4)
# The driver's runs (a GRO read, a GSO send, a coalesced TUN frame) are blocks of one RunPool.
RUN_SIZE: Final = max(GRO_BUFFER_SIZE, GSO_MAX_BYTES, COALESCE_RUN_SIZE)
# After an exception in the timer or the control round, the timer comes back no sooner than
# this: a bug that fails every time costs a log line now and then, not a busy loop.
_FAULT_BACKOFF = 0.5


def _nothing_queued(fd: int) -> bool:
    """True when the UDP socket has no datagram waiting (FIONREAD: the next one's size).

    An empty datagram reads as 0 too: it stays queued, the socket stays readable, and the
    next callback's first read takes it. An ioctl that fails says nothing: read on."""
    try:
        return fcntl.ioctl(fd, _FIONREAD, _NOTHING_QUEUED) == _NOTHING_QUEUED
    except OSError:
        return False


class Endpoint(Protocol):
    """What `Client` and `Server` both offer."""

    def receive(self, buf: Buffer, addr: Address, now: float) -> int: ...
    def encrypt(self, buf: Buffer, now: float) -> Address | None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> Event | None: ...
    def close(self, now: float) -> None: ...


@dataclass(slots=True)
class DriverStats:
    udp_rx: int = 0
    udp_tx: int = 0
    udp_tx_dropped: int = 0
    tun_rx: int = 0
    tun_tx: int = 0
    tun_tx_dropped: int = 0
    no_route: int = 0
    # Inputs dropped here before the protocol saw them: empty datagrams (and empty packets
    # from the device), datagrams larger than any we accept, truncated reads.
    malformed: int = 0
    # Exceptions caught inside a callback (a bug, logged with its traceback; survived).
    errors: int = 0


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
        self.batch = batch
        self.on_event = on_event
        self.stats = DriverStats()
        self.faults = CallbackFaults(log or logging.getLogger("tunnel"))
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._ipv6 = sock.family == socket.AF_INET6
        coalesce = isinstance(device, TunDevice) and device.vnet_hdr
        if isinstance(device, TunDevice):
            check_device_headroom(pool.frame, device.read_offset)
        # The runs are pool memory, counted with the packet pool's (status, metrics).
        self.runs = runs if runs is not None else RunPool(RUN_SIZE, 3 if coalesce else 2)
        # GSO: the sealed datagrams of one device batch leave in one sendmsg per destination.
        self._gso = GsoSender(sock, run=self.runs.acquire())
        # GRO: the kernel hands over runs of datagrams; they land here and are cut apart.
        enable_gro(sock)
        self._gro_view = self.runs.acquire().tailroom_view()[:GRO_BUFFER_SIZE]
        # TUN offload: consecutive TCP segments (UDP datagrams) of a flow enter the kernel as
        # one packet.
        self._coalescer: TunCoalescer | None = None
        if coalesce:
            assert isinstance(device, TunDevice)
            self._coalescer = TunCoalescer(device.write_frame, run=self.runs.acquire())
        self._running = False

    def start(self) -> None:
        self._running = True
        self.loop.add_reader(self.sock.fileno(), self._guarded(
            self._on_socket_readable, "reading from the link"))
        self.loop.add_reader(self.device.fileno(), self._guarded(
            self._on_device_readable, "reading from the device"))
        self._after_input(self.loop.time())

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self.loop.remove_reader(self.sock.fileno())
        self.loop.remove_reader(self.device.fileno())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close_endpoint(self) -> None:
        """Tell the peer(s) we leave (explicit-exit-notify) and flush that last word."""
        now = self.loop.time()
        self.endpoint.close(now)
        self._flush_control(now)
        self._drain_events()

    def kick(self) -> None:
        """Something outside the driver changed the endpoint (a management command): send
        what it queued, hand out its events and re-arm the timer now."""
        self._after_input(self.loop.time())

    # -- readiness callbacks -----------------------------------------------------------------

    def _on_socket_readable(self) -> None:
        now = self.loop.time()
        arena = self.arena
        recvmsg_into = self.sock.recvmsg_into
        receive = self.endpoint.receive
        write = self.device.write
        stats = self.stats
        ipv6 = self._ipv6
        run = self._gro_view
        runs = (run,)
        rx = tun_tx = tun_dropped = malformed = 0
        control = False  # a control, ping or OCC packet: state that needs servicing
        refused = False  # a dropped datagram: its (rate-limited) PacketDropped event waits
        coalescer = self._coalescer
        coalesce = coalescer.write if coalescer is not None else None
        packets = coalescer.packets if coalescer is not None else 0
        dropped = coalescer.dropped if coalescer is not None else 0
        try:
            # One buffer serves the whole batch: every datagram is finished with (written to
            # the device, which copies, or consumed) before the next, so it is re-armed instead
            # of taken from the pool per packet.
            buf = arena.take(self.pool)
            headroom = buf.offset
            reset = buf.reset
            append = buf.append
            reads = 0
            fd = self.sock.fileno()
            while rx < self.batch and reads < self.batch:
                if reads == 1 and _nothing_queued(fd):
                    # The datagram that woke us was all there is (the idle, interactive case):
                    # asking the queue costs a system call, the failing read that would tell
                    # the same costs one and a BlockingIOError (~8 us a wakeup, measured). With
                    # more queued, the batch goes on and ends at EAGAIN as before.
                    break
                reads += 1
                try:
                    # GRO: one read returns a run of datagrams from one sender, end to end.
                    size, ancdata, flags, addr = recvmsg_into(runs, GRO_CMSG_SPACE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    # ICMP port-unreachable surfaces as ECONNREFUSED on the next read: ignore.
                    continue
                if not size or flags & _MSG_TRUNC:
                    # An empty datagram is a valid UDP datagram and nothing we speak; a cut
                    # one cannot authenticate. Both are one more dropped input.
                    malformed += 1
                    continue
                if ipv6:
                    addr = addr[:2]
                segment = gro_segment_size(ancdata, size) if ancdata else size
                for start in range(0, size, segment):
                    reset(headroom)
                    try:
                        # Copied into the pooled buffer: the data channel opens in place and
                        # needs the frame's tailroom, which the run has not got.
                        append(run[start : min(start + segment, size)])
                    except BoundsError:
                        malformed += 1  # larger than any datagram we accept: drop it
                        continue
                    rx += 1
                    try:
                        verdict = receive(buf, addr, now)
                        if verdict == TO_TUN:
                            if coalesce is not None:
                                coalesce(buf)
                            elif write(buf.data):
                                tun_tx += 1
                            else:
                                tun_dropped += 1
                        elif verdict == CONSUMED:
                            control = True
                        elif verdict == DROPPED:
                            refused = True
                    except Exception as exc:  # a bug: this datagram is lost, nothing else
                        self._fault("the handling of a datagram from the link", exc)
                        control = True  # the state it left may have something to send
        finally:
            if coalescer is not None:
                coalescer.flush()
                tun_tx += coalescer.packets - packets - (coalescer.dropped - dropped)
                tun_dropped += coalescer.dropped - dropped
            arena.free()
            stats.udp_rx += rx
            stats.malformed += malformed
            stats.tun_tx += tun_tx
            stats.tun_tx_dropped += tun_dropped
        if control:
            # Data packets queue nothing and raise no event; the keepalive deadlines they push
            # back are re-read when the timer fires. So a data-only batch skips the control
            # work (measured: ~30 us a callback, which on an idle tunnel is latency).
            self._after_input(now)
        elif refused:
            try:
                self._drain_events()  # the drop reports only: no control work
            except Exception as exc:
                self._fault("handling an event", exc)

    def _on_device_readable(self) -> None:
        now = self.loop.time()
        arena = self.arena
        encrypt = self.endpoint.encrypt
        gso = self._gso
        queue = gso.add
        stats = self.stats
        tun_rx = no_route = malformed = 0
        sent, dropped = gso.sent, gso.dropped
        try:
            # One buffer for the batch, as above: `queue` copies the sealed datagram into the
            # GSO run, so the buffer is free again at once.
            buf = arena.take(self.pool)
            headroom = buf.offset
            reset = buf.reset
            device = self.device
            if isinstance(device, TunDevice):
                # The fast path: one view for the whole batch, the packet read straight to
                # `headroom` behind the TUN's virtio-net header.
                read_packet = device.read_packet
                reset(headroom - device.read_offset)
                room = buf.tailroom_view()
                inc_len = buf.inc_len
                for _ in range(self.batch):
                    size = read_packet(room)
                    if not size:
                        break
                    reset(headroom)
                    inc_len(size)
                    tun_rx += 1
                    try:
                        addr = encrypt(buf, now)
                        if addr is None:
                            no_route += 1
                            continue
                        queue(buf.data, addr)
                    except Exception as exc:  # a bug: this packet is lost, nothing else
                        self._fault("the handling of a packet from the device", exc)
            else:
                read_into = device.read_into
                for _ in range(self.batch):
                    reset(headroom)
                    if not read_into(buf):
                        break
                    if not len(buf):
                        malformed += 1  # an empty packet: nothing to send
                        continue
                    tun_rx += 1
                    try:
                        addr = encrypt(buf, now)
                        if addr is None:
                            no_route += 1
                            continue
                        queue(buf.data, addr)
                    except Exception as exc:  # a bug: this packet is lost, nothing else
                        self._fault("the handling of a packet from the device", exc)
            gso.flush()
        finally:
            arena.free()
            stats.tun_rx += tun_rx
            stats.malformed += malformed
            stats.no_route += no_route
            stats.udp_tx += gso.sent - sent
            stats.udp_tx_dropped += gso.dropped - dropped

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.loop.time()
        try:
            self.endpoint.handle_timer(now)
        except Exception as exc:  # a bug; the timer must go on, or every session stalls
            self._fault("the timer", exc)
            # A timer that fails again at once must not spin: come back a little later.
            self._after_input(now, timer_floor=now + _FAULT_BACKOFF)
            return
        self._after_input(now)

    def _guarded(self, callback: Callable[[], None], where: str) -> Callable[[], None]:
        """`callback` as a readiness callback that survives any exception it raises."""

        def run() -> None:
            try:
                callback()
            except Exception as exc:
                self._fault(where, exc)

        return run

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
                self._timer = self.loop.call_at(now + _FAULT_BACKOFF, self._on_timer)
                self._timer_at = now + _FAULT_BACKOFF

    def _flush_control(self, now: float) -> None:
        for datagram, addr in self.endpoint.datagrams_to_send(now):
            try:
                self.sock.sendto(datagram, addr)
                self.stats.udp_tx += 1
            except OSError:
                self.stats.udp_tx_dropped += 1  # the reliability layer retransmits

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
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)
