"""Per-connection memory for one event-loop iteration: OpenVPN's `gc_new()`/`gc_free()` around
each handler (forward.c, multi.c), one `GcArena` per connection.

Each connection (`Session.memory`, a `ConnectionMemory`) owns one arena for its whole life.
An iteration (one readiness callback or timer run of the driver) *touches* the connections it
works on: their arenas are taken for it, buffers allocated for them during the iteration are
entries of their arena, and `IterationArenas.end()` frees exactly the arenas of the
connections touched, so no early return or exception can leak a block, and the cost is per
connection touched, never a walk over all of them. A buffer that must outlive the iteration (a
datagram the kernel refused with EAGAIN and the driver keeps for later, a packet held for
reordering) is `detach`ed from its arena by its new owner, which releases it to its pool.

Sans-I/O: the pool is the I/O layer's (`IterationArenas.pool`, set by the driver); without
one, nothing is taken and callers use their copying fallback.
"""

from __future__ import annotations

from core import Buffer, BufferPool, GcArena, PoolExhausted

__all__ = ["ConnectionMemory", "IterationArenas", "PooledDatagram"]

Address = tuple[str, int]


class ConnectionMemory:
    """One connection's arena and how many iterations touched it."""

    __slots__ = ("arena", "iterations")

    def __init__(self) -> None:
        self.arena = GcArena()
        self.iterations = 0  # iterations that touched this connection (its arena's turns)

    @property
    def buffers_taken(self) -> int:
        """Pool buffers taken for this connection so far (freed, detached or still live)."""
        arena = self.arena
        return arena.entries_freed + arena.detached + arena.live_entries


PooledDatagram = tuple[Buffer, Address, GcArena]
"""A datagram sealed in a pool buffer, where to send it, and the arena that owns the buffer
until the end of the iteration (the sender `detach`es it to keep it longer)."""


class IterationArenas:
    """The connections one iteration touched, and the pooled datagrams it queued for them."""

    __slots__ = ("_out", "exhausted", "pool", "touched", "unsent")

    def __init__(self) -> None:
        # Insertion-ordered dict as a set; the hot path writes it directly (`touched[m] = None`).
        self.touched: dict[ConnectionMemory, None] = {}
        self.pool: BufferPool | None = None
        self._out: list[PooledDatagram] = []
        self.exhausted = 0  # buffers not taken because the pool was empty (datagram dropped)
        self.unsent = 0  # pooled datagrams freed at the iteration's end without being sent

    def take(self, memory: ConnectionMemory) -> Buffer | None:
        """A pool buffer for this connection, freed at the end of the iteration; None without
        a pool or when it is exhausted (counted): the caller drops or copies."""
        pool = self.pool
        if pool is None:
            return None
        self.touched[memory] = None
        try:
            return memory.arena.take(pool)
        except PoolExhausted:
            self.exhausted += 1
            return None

    def queue(self, buf: Buffer, addr: Address, memory: ConnectionMemory) -> None:
        """A datagram sealed in `buf` (taken with `take`) to be sent in this iteration."""
        self._out.append((buf, addr, memory.arena))

    def to_send(self) -> list[PooledDatagram]:
        out = self._out
        if out:
            self._out = []
        return out

    def end(self) -> None:
        """Free the arena of every connection touched; the iteration is over."""
        if self._out:
            self.unsent += len(self._out)
            self._out = []
        touched = self.touched
        if not touched:
            return
        first_error: Exception | None = None
        for memory in touched:
            memory.iterations += 1
            try:
                memory.arena.free()
            except Exception as error:  # every arena is freed even if one fails
                first_error = first_error or error
        touched.clear()
        if first_error is not None:
            raise first_error
