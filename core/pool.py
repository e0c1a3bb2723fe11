"""`BufferPool`: one preallocated slab carved into equal blocks, bounded, with counters.

All packet memory comes from here (`BufferPool`, blocks of a `Frame`), and so does the memory
for runs of packets (`RunPool`, 64 KiB blocks for GSO/GRO and TUN offload). The pool owns one
`Buffer` object per block for its whole life and keeps the idle ones on a LIFO free list (the
most recently used block is the one most likely still in cache), so `acquire` and `release`
allocate nothing.

Use-after-release costs nothing on the hot path: `release` swaps the buffer's class to
`ReleasedBuffer`, whose every public method and property raises `PoolError`, and `acquire` swaps
it back. A buffer that has never been acquired is also a `ReleasedBuffer`. Memoryviews taken from
a buffer before its release still alias the block; they are the caller's to drop.

The pool never grows: when every block is in use, `acquire` raises `PoolExhausted` so the caller
applies back-pressure (drops or delays a packet) instead of the process swelling silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from core.buffer import Buffer
from core.errors import PoolError, PoolExhausted
from core.frame import BLOCK_ALIGN, Frame


def _refuse(*_args: object, **_kwargs: object) -> NoReturn:
    raise PoolError("use of a released buffer")


class ReleasedBuffer(Buffer):
    """The class of a buffer while it is back in its pool (or freed by its arena)."""

    __slots__ = ()  # same layout as Buffer, which is what makes the `__class__` swap legal

    def __repr__(self) -> str:
        return f"<ReleasedBuffer capacity={self._cap}>"  # repr must work for debuggers


# Every public method and property of Buffer, and len(), raises on a released buffer. Generated so
# that a method added to Buffer later is refused too. `over` is a constructor, not an access.
for _name, _attr in vars(Buffer).items():
    if (_name.startswith("_") and _name != "__len__") or isinstance(_attr, classmethod):
        continue
    setattr(ReleasedBuffer, _name, property(_refuse) if isinstance(_attr, property) else _refuse)
del _name, _attr


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool's counters; `in_use` back at its idle value means no leak."""

    size: int
    in_use: int
    high_water: int
    acquires: int
    releases: int
    exhaustions: int


class BlockPool:
    """`count` blocks of `block_size` bytes carved from one slab; buffers come out armed at
    `headroom`. The shared machinery of `BufferPool` (packets) and `RunPool` (runs)."""

    __slots__ = (
        "_acquires",
        "_block_size",
        "_exhaustions",
        "_free",
        "_headroom",
        "_low_free",
        "_size",
        "_slab",
    )

    def __init__(self, block_size: int, headroom: int, count: int) -> None:
        if count < 1:
            raise ValueError(f"a pool needs at least one block, got count={count}")
        if not 0 <= headroom <= block_size:
            raise ValueError(f"headroom {headroom} outside a block of {block_size} bytes")
        self._block_size = block_size
        self._headroom = headroom
        self._size = count
        self._slab = bytearray(block_size * count)
        slab = memoryview(self._slab)
        buffers = []
        for start in range(0, block_size * count, block_size):
            buf = Buffer.over(slab[start : start + block_size])
            buf._home = self
            buf.__class__ = ReleasedBuffer
            buffers.append(buf)
        buffers.reverse()  # so the first acquire hands out the first block
        self._free: list[Buffer] = buffers
        # The hot path keeps two counters only; in_use, high_water and releases derive from them
        # and the free list's length (every successful release undoes one acquire).
        self._low_free = count
        self._acquires = 0
        self._exhaustions = 0

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def slab_bytes(self) -> int:
        """The slab's size: all the memory this pool holds."""
        return self._block_size * self._size

    @property
    def available(self) -> int:
        return len(self._free)

    def acquire(self) -> Buffer:
        """An empty buffer at the pool's headroom; raises `PoolExhausted` when none is free."""
        free = self._free
        if not free:
            self._exhaustions += 1
            raise PoolExhausted(f"all {self._size} buffers of the pool are in use")
        buf = free.pop()
        buf.__class__ = Buffer
        buf._off = self._headroom
        buf._len = 0
        self._acquires += 1
        if len(free) < self._low_free:
            self._low_free = len(free)
        return buf

    def release(self, buf: Buffer) -> None:
        """Give a buffer back. Raises `PoolError` for a foreign buffer or a second release."""
        try:
            home = buf._home
        except AttributeError:
            raise PoolError(f"not a pool buffer: {type(buf).__name__}") from None
        if home is not self:
            raise PoolError("release of a buffer that belongs to another pool (or to none)")
        if buf.__class__ is not Buffer:
            raise PoolError("double release of a buffer")
        buf.__class__ = ReleasedBuffer
        self._free.append(buf)

    @property
    def stats(self) -> PoolStats:
        in_use = self._size - len(self._free)
        return PoolStats(
            size=self._size,
            in_use=in_use,
            high_water=self._size - self._low_free,
            acquires=self._acquires,
            releases=self._acquires - in_use,
            exhaustions=self._exhaustions,
        )

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} size={self._size} in_use={self._size - len(self._free)} "
            f"block={self._block_size}>"
        )


class BufferPool(BlockPool):
    """`count` blocks of `frame.buffer_size` bytes; buffers come out armed at `frame.headroom`."""

    __slots__ = ("_frame",)

    def __init__(self, frame: Frame, count: int) -> None:
        super().__init__(frame.buffer_size, frame.headroom, count)
        self._frame = frame

    @property
    def frame(self) -> Frame:
        return self._frame


class RunPool(BlockPool):
    """Blocks for *runs*: many packets end to end in one buffer (a GRO read, a GSO send, a
    coalesced TUN frame: up to 64 KiB each), at offset 0.

    Run buffers are few and long-lived: an owner (`GsoSender`, `TunCoalescer`, a driver's GRO
    read) acquires one when it is built and keeps it, so the pool's `in_use` is the number of
    runs alive and `slab_bytes` their memory, in the same counters as the packet pool. Bounded like
    every pool: one owner too many is `PoolExhausted` at construction, never growth."""

    __slots__ = ("_run_size",)

    def __init__(self, run_size: int, count: int) -> None:
        if run_size < 1:
            raise ValueError(f"a run needs at least one byte, got run_size={run_size}")
        super().__init__(-(-run_size // BLOCK_ALIGN) * BLOCK_ALIGN, 0, count)
        self._run_size = run_size

    @property
    def run_size(self) -> int:
        """The largest run a block holds (the block is rounded up to a cache line)."""
        return self._run_size
