"""The data path, both directions, as plain functions: what the drivers run and the bench times.

Outbound flow (device -> link), `outbound_batch`, one device readiness callback:
  1. up to `batch` packets are read from the device into ONE pooled buffer, each straight to
     the frame's headroom (`PacketDevice.read_packet` into one view for the whole batch: the
     device's own header, the virtio-net one, lands just in front and is stepped over);
  2. `encrypt(buf, now)` (the endpoint: route, mssfix, seal) works in place and returns the
     peer's address, or None (no route: counted);
  3. `queue(buf.data, addr)` takes the sealed datagram before the buffer is re-armed: a copy
     into the UDP GSO run for that address (`GsoSender.add`), or behind its length prefix
     into the TCP connection's output (ConnDriver, which prepends it into `buf`'s headroom);
  4. the caller flushes when the batch ends: one `sendmsg` per run (`UDP_SEGMENT`) or one
     `send` per touched connection. Nothing waits for a later event.

Inbound flow (link -> device), `inbound_batch` (UDP) or a connection's packets (TCP):
  1. one `recvmsg_into` per GRO run (datagrams of one sender end to end, the segment size in
     a `UDP_GRO` control message); after the first read a zero-timeout poll says whether more waits,
     so an idle tunnel's wakeup never pays for a failing read;
  2. each datagram is in the batch's one pooled buffer: the read scatters into its tailroom
     first, so the first datagram of a read (a lone one: the interactive case) lands where it
     is opened, and the run's others are copied there from the run behind it (the data
     channel opens in place and needs the frame's tailroom, which the run has not got);
  3. `receive(buf, addr, now)` (the endpoint: authenticate, replay check, decrypt, route)
     returns a verdict: TO_TUN, CONSUMED (control, ping, OCC: control work after the batch)
     or DROPPED (its rate-limited event after the batch);
  4. TO_TUN: `DeviceOutput.write(buf)`: consecutive segments of a flow merged into one GSO
     frame when the device takes virtio-net frames (`TunCoalescer`), else one write each;
  5. `DeviceOutput.flush()` when the callback ends, so no packet waits for the next one.

Per packet: no allocation beyond views and ints, no system call beyond the run's share.
An exception while one packet is handled (a bug) drops that packet only: `fault` records it
and the batch goes on.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from core import BoundsError, Buffer, RunPool
from tunnel.io.batch_kinds import CONTROL, REFUSED
from tunnel.io.device import PacketDevice
from tunnel.io.gso import GRO_CMSG_SPACE, gro_segment_size
from tunnel.io.offload import TunCoalescer
from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN

if TYPE_CHECKING:
    from tunnel.io.gro_rows import RunOpener

__all__ = [
    "CONTROL",
    "REFUSED",
    "DeviceOutput",
    "UdpLink",
    "inbound_batch",
    "outbound_batch",
]

Address = tuple[str, int]
Fault = Callable[[str, Exception], None]
Encrypt = Callable[[Buffer, float], "Address | None"]
Queue = Callable[[memoryview, Address], object]
Receive = Callable[[Buffer, Address, float], int]

# What an inbound batch saw beyond data, as bits of its third result: CONTROL, REFUSED
# (tunnel/io/batch_kinds.py), re-exported here for the driver.

# Per-packet constants as plain ints: `flags & socket.MSG_TRUNC` calls enum.Flag.__and__ in
# Python and builds a flag object (~4 us a datagram, measured).
_MSG_TRUNC: Final = int(socket.MSG_TRUNC)
def outbound_batch(
    device: PacketDevice, buf: Buffer, batch: int, encrypt: Encrypt, queue: Queue, now: float,
    fault: Fault, send: Queue | None = None, first: int = 0, first_lone: bool = False,
) -> tuple[int, int]:
    """Steps 1-3 of the outbound flow for up to `batch` packets; the caller flushes (step 4).

    `buf` is armed at the frame's headroom and left re-armed per packet. A wakeup's first
    packet with nothing behind it (`device.waiting()`: the interactive case) goes to `send`
    (default `queue`), which sends it at once, and ends the batch without a failing read.
    `first`: the size of a packet already read to the headroom (the lone-packet lane,
    tunnel/io/lane.py, handed it over), alone when `first_lone`.
    Returns (packets read, packets without a route)."""
    headroom = buf.offset
    reset = buf.reset
    inc_len = buf.inc_len
    read_packet = device.read_packet
    reset(headroom - device.read_offset)
    room = buf.tailroom_view()
    read = no_route = 0
    lone = False
    while read < batch:
        if first:
            size = first
            first = 0
            lone = first_lone
        else:
            size = read_packet(room)
            if not size:
                break
            if not read:
                lone = not device.waiting()
        reset(headroom)
        inc_len(size)
        read += 1
        try:
            addr = encrypt(buf, now)
            if addr is None:
                no_route += 1
            elif lone and send is not None:
                send(buf.data, addr)
            else:
                queue(buf.data, addr)
        except Exception as exc:  # a bug: this packet is lost, nothing else
            fault("the handling of a packet from the device", exc)
        if lone:
            break
    return read, no_route


class DeviceOutput:
    """Steps 4-5 of the inbound flow: cleartext packets to the device, coalesced into GSO
    frames when it takes virtio-net frames (`PacketDevice.offload`), else one write each.

    `write(buf)` and `flush()` are plain attributes (bound methods chosen once), so the hot
    loop calls them without a branch. `counts.packets` taken, `counts.dropped` refused by the
    device: plain attributes of the coalescer, or of this object (read without a call)."""

    __slots__ = ("_device", "coalescer", "counts", "dropped", "flush", "packets", "write",
                 "write_alone")

    def __init__(self, device: PacketDevice, runs: RunPool | None = None) -> None:
        """`runs`: where the coalescer's run buffer comes from (one block, held)."""
        self._device = device
        self.packets = self.dropped = 0
        self.coalescer: TunCoalescer | None = None
        self.counts: TunCoalescer | DeviceOutput = self
        self.write: Callable[[Buffer], None]
        # A lone packet (nothing read before or after it in its wakeup): written at once,
        # with nothing to merge it with.
        self.write_alone: Callable[[Buffer], None]
        self.flush: Callable[[], None]
        if device.offload:
            run = runs.acquire() if runs is not None else None
            coalescer = self.coalescer = self.counts = TunCoalescer(device.write_frame, run=run)
            self.write = coalescer.write
            self.write_alone = coalescer.write_alone
            self.flush = coalescer.flush
        else:
            self.write = self.write_alone = self._write_one
            self.flush = _nothing

    def _write_one(self, buf: Buffer) -> None:
        self.packets += 1
        if not self._device.write(buf.data):
            self.dropped += 1


def _nothing() -> None:
    pass


class UdpLink:
    """What the inbound flow reads a UDP socket with, looked up once (`sock.family` alone
    costs ~1.7 us: it builds an enum): the bound `recvmsg_into`, the fd, IPv6 or not, the
    GRO run buffer, and `ready`: a zero-timeout poll of this socket alone.

    `ready(0)` is empty when no datagram is queued (the wakeup's one was all there is): one
    system call and no exception, where a failing read costs one and a BlockingIOError (~8 us
    a wakeup, measured), and half of a FIONREAD ioctl (1.2 against 3.5 us warm, 14 against 30
    cold, measured). An empty datagram or a pending error (ICMP port unreachable) makes it
    non-empty too: the batch reads on and meets it."""

    __slots__ = ("_poll", "_rest", "_split", "fd", "ipv6", "ready", "recvmsg_into", "run")

    def __init__(self, sock: socket.socket, run: memoryview) -> None:
        self.recvmsg_into = sock.recvmsg_into
        self.fd = sock.fileno()
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self.ready = self._poll.poll
        self.ipv6 = sock.family == socket.AF_INET6
        self.run = run
        self._split = 0
        self._rest = run

    def rest(self, split: int) -> memoryview:
        """The run beyond its first `split` bytes (cached: the same split every callback)."""
        if split != self._split:
            self._split = split
            self._rest = self.run[split:]
        return self._rest


def inbound_batch(
    link: UdpLink, buf: Buffer, batch: int, receive: Receive, write: Callable[[Buffer], None],
    now: float, fault: Fault, runs: RunOpener | None = None,
    write_alone: Callable[[Buffer], None] | None = None,
    pre: tuple[int, int, Address, bool] | None = None,
) -> tuple[int, int, int]:
    """Steps 1-4 of the inbound flow for up to `batch` datagrams (the caller flushes: step 5).

    `buf` is armed at the frame's headroom. `runs`: who opens a GRO run's full-size datagrams
    in one batch (tunnel/io/gro_rows.py), where the endpoint can; what it does not take goes
    the per-packet way. A wakeup's first datagram read alone with nothing queued behind it
    (the interactive case) goes to `write_alone` (default `write`), which writes it at once
    instead of starting a run. `pre`: a first read already done into `buf`'s tailroom and the
    run behind it (the lone-packet lane, tunnel/io/lane.py, handed it over): (size, segment,
    source, alone). Returns (datagrams handed to the endpoint, malformed inputs
    dropped here, CONTROL | REFUSED bits)."""
    if write_alone is None:
        write_alone = write
    recvmsg_into = link.recvmsg_into
    ready = link.ready
    ipv6 = link.ipv6
    run = link.run
    headroom = buf.offset
    reset = buf.reset
    append = buf.append
    inc_len = buf.inc_len
    # Step 1 reads into the pooled buffer's tailroom first and the run behind it: a datagram
    # read alone (the interactive case) is then already where it is opened, with no copy;
    # a GRO run's later datagrams continue in the run.
    tail = buf.tailroom_view()
    room = len(tail)
    iov = (tail, link._rest if room == link._split else link.rest(room))
    rx = malformed = kinds = reads = 0
    asked = lone = False
    while rx < batch and reads < batch:
        if reads == 1 and not asked and not ready(0):
            # The datagram that woke us was all there is (the idle, interactive case): the
            # poll costs a system call and no exception (UdpLink). With more queued, the
            # batch goes on and ends at EAGAIN as before.
            break
        reads += 1
        if pre is not None:
            size, segment, addr, lone = pre  # (the lane asked the same poll)
            pre = None
            asked = segment >= size
        else:
            try:
                # GRO: one read returns a run of datagrams from one sender, end to end.
                size, ancdata, flags, addr = recvmsg_into(iov, GRO_CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # ICMP port-unreachable surfaces as ECONNREFUSED on the next read: ignore.
                continue
            if not size or flags & _MSG_TRUNC:
                # An empty datagram is a valid UDP datagram and nothing we speak; a cut one
                # cannot authenticate. Both are one more dropped input.
                malformed += 1
                continue
            if ipv6:
                addr = addr[:2]
            segment = gro_segment_size(ancdata, size) if ancdata else size
            if reads == 1 and segment >= size:
                # One datagram: whether it is the wakeup's only one is asked now (the same
                # poll), so that it can be written alone.
                asked = True
                lone = not ready(0)
        if size > segment < room:
            # The run's second datagram starts inside the buffer's part: those bytes join
            # the rest in the run before the first datagram is opened over them.
            end = min(size, room)
            run[segment:end] = tail[segment:end]
        begin = 0
        if runs is not None and size >= segment * 2 and segment <= room:
            try:
                taken, seen = runs.take(tail, run[segment:size], segment, size, addr, now)
            except Exception as exc:  # a bug: this run is lost (it may be half opened)
                fault("the handling of a GRO run from the link", exc)
                taken, seen = size // segment, CONTROL
            rx += taken
            kinds |= seen
            begin = taken * segment
        for start in range(begin, size, segment):
            reset(headroom)
            if not start:
                if segment > room:
                    malformed += 1  # larger than any datagram we accept: drop it
                    continue
                inc_len(segment)  # in place (step 2 without the copy)
            else:
                try:
                    append(run[start : min(start + segment, size)])
                except BoundsError:
                    malformed += 1  # larger than any datagram we accept: drop it
                    continue
            rx += 1
            try:
                verdict = receive(buf, addr, now)
                if verdict == TO_TUN:
                    if lone:
                        write_alone(buf)
                    else:
                        write(buf)
                elif verdict == CONSUMED:
                    kinds |= CONTROL
                elif verdict == DROPPED:
                    kinds |= REFUSED
            except Exception as exc:  # a bug: this datagram is lost, nothing else
                fault("the handling of a datagram from the link", exc)
                kinds |= CONTROL  # the state it left may have something to send
        if lone:
            break
    return rx, malformed, kinds
