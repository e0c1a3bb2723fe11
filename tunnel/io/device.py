"""The packet device: where cleartext IP packets enter and leave the tunnel.

`PacketDevice` is the interface the tunnel core drives; `TunDevice` (tunnel/io/tun.py) is the
kernel implementation and `MemoryDevice` below the in-process one for the demo and tests.

Both have the same readiness model, so the event-loop adapter treats them alike:
`fileno()` is a real, non-blocking file descriptor that is readable exactly while at least one
packet is waiting (level-triggered, like a TUN fd). The adapter registers it with
`loop.add_reader(dev.fileno(), cb)` and `cb` drains a bounded batch with `read_into` until it
returns False.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core import Buffer


class DeviceError(OSError):
    """Opening or configuring a packet device failed; `str()` says why and what to do.

    `errno` carries the underlying error code (EPERM, ENODEV, ...).
    """


class PacketDevice(Protocol):
    """One packet per call, never blocking; counters are plain ints the caller may read."""

    name: str
    rx_packets: int
    tx_packets: int
    tx_dropped: int

    def fileno(self) -> int:
        """A non-blocking fd that is readable while a packet is waiting."""
        ...

    def read_into(self, buf: Buffer) -> bool:
        """Append one packet to `buf` (into its tailroom); False when none is waiting."""
        ...

    def write(self, data: memoryview) -> bool:
        """Hand one packet to the device; False when it was dropped (device full)."""
        ...

    def close(self) -> None:
        """Release the device; calling it again does nothing."""
        ...


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
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.name = name
        self.on_write = on_write
        self.capacity = capacity
        self.rx_packets = 0
        self.rx_dropped = 0  # injected while the queue was full, or larger than the buffer
        self.tx_packets = 0
        self.tx_dropped = 0
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

    def read_into(self, buf: Buffer) -> bool:
        queue = self._queue
        while queue:
            packet = queue.popleft()
            if not queue:
                os.read(self._wake_r, 1)  # non-empty -> empty: the fd stops being readable
            if len(packet) > buf.tailroom:
                # What the kernel does with a packet larger than the read buffer: it is lost.
                self.rx_dropped += 1
                continue
            buf.append(packet)
            self.rx_packets += 1
            return True
        return False

    def write(self, data: memoryview) -> bool:
        sink = self.on_write
        if sink is not None and sink(data) is False:
            self.tx_dropped += 1
            return False
        self.tx_packets += 1
        return True

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
