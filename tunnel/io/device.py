"""The packet device: where cleartext IP packets enter and leave the tunnel.

`PacketDevice` is the interface the tunnel core drives; `TunDevice` (tunnel/io/tun.py) is the
kernel implementation and `MemoryDevice` below the in-process one for the demo and tests.

Both have the same readiness model, so the event-loop adapter treats them alike:
`fileno()` is a real, non-blocking file descriptor that is readable exactly while at least one
packet is waiting (level-triggered, like a TUN fd). The adapter registers it with
`loop.add_reader(dev.fileno(), cb)` and `cb` drains a bounded batch with `read_packet` until
it returns 0.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from core import BoundsError
from tunnel.io.offload import VNET_HDR_SIZE, ZERO_VNET_HDR, split_gso

if TYPE_CHECKING:
    from core import Buffer


class DeviceError(OSError):
    """Opening or configuring a packet device failed; `str()` says why and what to do.

    `errno` carries the underlying error code (EPERM, ENODEV, ...).
    """


class PacketDevice(Protocol):
    """One packet per call, never blocking; counters are plain ints the caller may read.

    What the data path (tunnel/io/datapath.py) needs, and nothing about the concrete device:
    `read_packet` into one view per batch (the packet lands `read_offset` bytes into it,
    behind the device's own header), `write` for one bare packet, and, where `offload` is
    True, `write_frame` for a virtio-net header + packet, which may be a GSO packet standing
    for many (tunnel/io/offload.py builds them).
    """

    name: str
    rx_packets: int
    tx_packets: int
    tx_dropped: int
    # Bytes in front of each packet in what `read_packet` reads (the virtio-net header).
    read_offset: int
    # `write_frame` takes virtio-net frames (GSO_TCPV4 / GSO_UDP_L4 runs included).
    offload: bool

    def fileno(self) -> int:
        """A non-blocking fd that is readable while a packet is waiting."""
        ...

    def read_packet(self, room: memoryview) -> int:
        """Read one packet into `room` at `read_offset`; its length, or 0 when none is waiting.

        A packet that does not fit, or is empty, is dropped and counted (`rx_dropped`) and the
        next one read."""
        ...

    def waiting(self) -> bool:
        """True when a packet may be waiting, so that `read_packet` is worth a call; False
        when none is. The batch reader asks after a wakeup's first packet: where the device
        has nothing more (the interactive case), that answer is cheaper than a failing read
        (a TUN has no FIONREAD, and its EAGAIN is an exception inside `readinto`)."""
        ...

    def holds(self) -> bool:
        """True when packets already taken from the kernel wait inside the device (a TSO
        read-ahead, a super-packet being cut): no readiness wakeup comes for them, so a batch
        that stopped at its limit must be followed by another callback."""
        ...

    def write(self, data: memoryview) -> bool:
        """Hand one packet to the device; False when it was dropped (device full)."""
        ...

    def write_frame(self, frame: memoryview) -> bool:
        """Hand one frame (virtio-net header + packet) to a device with `offload`."""
        ...

    def close(self) -> None:
        """Release the device; calling it again does nothing."""
        ...


def read_into(device: PacketDevice, buf: Buffer) -> bool:
    """One packet appended to `buf` (into its tailroom); False when none is waiting.

    For callers outside the batch path (tests, tools): the same `read_packet` the data path
    does. The device's own header (`read_offset` bytes) lands in the headroom of an empty
    buffer; where there is none (a frame without registered headroom, or a buffer with
    contents), it lands in the tailroom and the packet is moved over it (one copy)."""
    if not buf.tailroom:
        # A zero-length read would consume (and lose) a packet; this is a caller's bug.
        raise BoundsError(f"read_into {device.name}: the buffer has no tailroom")
    skip = device.read_offset
    if skip and not len(buf) and buf.headroom >= skip:
        start = buf.offset
        buf.reset(start - skip)
        size = device.read_packet(buf.tailroom_view())
        buf.reset(start)
    else:
        room = buf.tailroom_view()
        size = device.read_packet(room)
        if size and skip:
            room[:size] = room[skip : skip + size]
    if not size:
        return False
    buf.inc_len(size)
    return True


# The sink sees a view into a pooled buffer that is reused as soon as it returns: it must use
# or copy the bytes right away. Returning False simulates a full device (the packet counts as
# dropped); None or True means accepted.
WriteSink = Callable[[memoryview], bool | None]


class MemoryDevice:
    """A packet device inside the process: packets are injected by the caller, written ones
    go to a callback.

    Wake-up: `fileno()` is the read end of a pipe holding one byte while the injection queue is
    non-empty, so an event loop waits for injected packets exactly as it waits on a TUN fd.
    Not thread-safe: inject from the thread that runs the loop (use
    `loop.call_soon_threadsafe(dev.inject, pkt)` from elsewhere).
    """

    def __init__(
        self,
        name: str = "mem0",
        *,
        on_write: WriteSink | None = None,
        capacity: int = 1024,
        offload: bool = False,
    ) -> None:
        """`offload`: behave like a TUN opened with `IFF_VNET_HDR` (the driver then coalesces
        its writes): reads carry a zero virtio-net header, `write_frame` takes frames and
        hands the sink the packets a GSO frame stands for, as the kernel would
        (`offload.split_gso`); `frames`/`gso_frames` count what came in."""
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.name = name
        self.on_write = on_write
        self.capacity = capacity
        self.rx_packets = 0
        self.rx_dropped = 0  # injected while the queue was full, or larger than the buffer
        self.tx_packets = 0
        self.tx_dropped = 0
        self.offload = offload
        self.read_offset = VNET_HDR_SIZE if offload else 0
        self.frames = 0  # write_frame calls
        self.gso_frames = 0  # of which GSO packets standing for several
        self._queue: deque[bytes | bytearray | memoryview] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False

    def fileno(self) -> int:
        return self._wake_r

    @property
    def pending(self) -> int:
        """Packets injected and not read yet."""
        return len(self._queue)

    def inject(self, packet: bytes | bytearray | memoryview) -> bool:
        """Queue one packet to be read from the device; False (and counted) when full.

        The object is kept, not copied, until it is read: don't mutate it meanwhile.
        """
        queue = self._queue
        if len(queue) >= self.capacity:
            self.rx_dropped += 1
            return False
        if not queue:
            # Empty -> non-empty: make the fd readable. Only this transition writes, so the
            # pipe never holds more than one byte and can never fill up.
            os.write(self._wake_w, b"\x01")
        queue.append(packet)
        return True

    def read_packet(self, room: memoryview) -> int:
        queue = self._queue
        skip = self.read_offset
        limit = len(room) - skip
        while queue:
            packet = queue.popleft()
            if not queue:
                os.read(self._wake_r, 1)  # non-empty -> empty: the fd stops being readable
            size = len(packet)
            if not size or size > limit:
                # What the kernel does with a packet larger than the read buffer: it is lost.
                self.rx_dropped += 1
                continue
            if skip:
                room[:skip] = ZERO_VNET_HDR  # a plain packet, its checksum complete
            room[skip : skip + size] = packet
            self.rx_packets += 1
            return size
        return 0

    def read_into(self, buf: Buffer) -> bool:
        return read_into(self, buf)

    def waiting(self) -> bool:
        return bool(self._queue)

    def holds(self) -> bool:
        return False  # the wake pipe stays readable while anything is queued

    def write(self, data: memoryview) -> bool:
        sink = self.on_write
        if sink is not None and sink(data) is False:
            self.tx_dropped += 1
            return False
        self.tx_packets += 1
        return True

    def write_frame(self, frame: memoryview) -> bool:
        if not self.offload:
            raise ValueError(f"{self.name}: write_frame needs offload=True")
        self.frames += 1
        packets = split_gso(frame)
        if len(packets) > 1:
            self.gso_frames += 1
        accepted = True
        for packet in packets:
            accepted = self.write(memoryview(packet)) and accepted
        return accepted

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> MemoryDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
