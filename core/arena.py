"""`GcArena`: OpenVPN's `gc_arena` - everything taken during one unit of work, freed together.

The tunnel opens one arena per connection per event-loop iteration (OpenVPN's per-handler
`gc_new()`/`gc_free()` in forward.c): every buffer taken while draining a batch is registered, and
one `free()` at the end of the iteration gives all of them back, so an early `return` or an
exception in the middle cannot leak a block. What must outlive the iteration (a datagram the
kernel refused with EAGAIN, a control packet awaiting its ACK) is `detach`ed to its new owner.

Entries, as in OpenVPN:
- pooled buffers (`take(pool)`): released to their pool;
- scratch buffers (`alloc(n)`, OpenVPN's `alloc_buf_gc`): their own memory, made unusable;
- specials (`add_special(obj, destructor)`, OpenVPN's `gc_addspecial`): `destructor(obj)` is
  called, in reverse order of registration, after the buffers are back.

`free()` empties the arena and leaves it ready for the next iteration, so one arena object serves
a connection for its whole life; `with arena:` frees on exit and can be entered again.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from core.buffer import Buffer
from core.errors import PoolError
from core.pool import BlockPool, ReleasedBuffer

T = TypeVar("T")


class GcArena:
    __slots__ = (
        "_buffers",
        "_bytes_freed",
        "_detached",
        "_entries_freed",
        "_iterations",
        "_specials",
    )

    def __init__(self) -> None:
        self._buffers: list[Buffer] = []
        self._specials: list[tuple[object, Callable[[object], object]]] = []
        self._iterations = 0
        self._entries_freed = 0
        self._bytes_freed = 0
        self._detached = 0

    # -- registering ------------------------------------------------------------------------

    def take(self, pool: BlockPool) -> Buffer:
        """Acquire a buffer from `pool` and register it; `PoolExhausted` registers nothing."""
        buf = pool.acquire()
        self._buffers.append(buf)
        return buf

    def alloc(self, n: int) -> Buffer:
        """A scratch buffer of capacity n with its own memory, unusable after `free()`."""
        buf = Buffer(n)
        self._buffers.append(buf)
        return buf

    def add_special(self, obj: T, destructor: Callable[[T], object]) -> T:
        """Register `destructor(obj)` to run at `free()`; returns `obj` for convenience."""
        # The pair is stored type-erased; the destructor only ever receives its own obj.
        self._specials.append((obj, destructor))  # type: ignore[arg-type]
        return obj

    def detach(self, buf: Buffer) -> Buffer:
        """Remove `buf` from the arena: its new owner releases it. Raises `PoolError` if absent."""
        buffers = self._buffers
        # Search from the end: the buffer detached is usually one of the last taken.
        for index in range(len(buffers) - 1, -1, -1):
            if buffers[index] is buf:
                del buffers[index]
                self._detached += 1
                return buf
        raise PoolError("detach of a buffer that is not an entry of this arena")

    # -- freeing ----------------------------------------------------------------------------

    def free(self) -> None:
        """Release every entry; the arena is empty and reusable afterwards. Idempotent.

        Every entry is released even if one fails (a buffer already released by hand, a
        destructor that raises); the first such error is re-raised at the end.
        """
        buffers = self._buffers
        specials = self._specials
        if not buffers and not specials:
            return
        first_error: BaseException | None = None
        nbytes = 0
        count = len(buffers) + len(specials)
        for buf in buffers:
            nbytes += buf._cap
            home = buf._home
            if home is None:
                buf.__class__ = ReleasedBuffer
                continue
            try:
                home.release(buf)
            except PoolError as error:
                first_error = first_error or error
        buffers.clear()
        while specials:
            obj, destructor = specials.pop()
            try:
                destructor(obj)
            except Exception as error:
                first_error = first_error or error
        self._iterations += 1
        self._entries_freed += count
        self._bytes_freed += nbytes
        if first_error is not None:
            raise first_error

    def __enter__(self) -> GcArena:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.free()

    # -- counters ---------------------------------------------------------------------------

    @property
    def live_entries(self) -> int:
        """Entries registered and not yet freed or detached."""
        return len(self._buffers) + len(self._specials)

    @property
    def iterations(self) -> int:
        """How many `free()` calls released something: the arena's completed cycles."""
        return self._iterations

    @property
    def entries_freed(self) -> int:
        return self._entries_freed

    @property
    def bytes_freed(self) -> int:
        """Capacity of the buffers freed (pooled and scratch); specials count no bytes."""
        return self._bytes_freed

    @property
    def detached(self) -> int:
        return self._detached

    def __repr__(self) -> str:
        return (
            f"<GcArena live={self.live_entries} iterations={self._iterations} "
            f"entries_freed={self._entries_freed} bytes_freed={self._bytes_freed}>"
        )
