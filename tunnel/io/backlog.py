"""Pooled datagrams the kernel refused with EAGAIN, kept until the socket can take them.

A datagram the server sealed in a pool buffer for a connection (client-to-client) belongs to
that connection's arena until the end of the event-loop iteration (tunnel/protocol/memory.py).
If the socket's send buffer is full, the backlog `detach`es the buffer from the arena (so the
iteration's `free()` leaves it alone), keeps it in order behind the others, and sends it when
the socket is writable again; then, or when it gives up, it releases the buffer to its pool.
Bounded: beyond `limit` datagrams waiting, a refused one is dropped (and freed with its arena),
as a router's full queue would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from core import BlockPool, Buffer, GcArena

__all__ = ["DEFAULT_LIMIT", "ControlBacklog", "SendBacklog"]

Address = tuple[str, int]
DEFAULT_LIMIT = 64


class SendBacklog:
    __slots__ = ("_pool", "_queue", "_sendto", "dropped", "kept", "limit", "sent")

    def __init__(
        self, sendto: Callable[[memoryview, Address], object], pool: BlockPool,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._sendto = sendto
        self._pool = pool
        self._queue: deque[tuple[Buffer, Address]] = deque()
        self.limit = limit
        self.sent = 0  # datagrams handed to the kernel (at once or later)
        self.kept = 0  # datagrams detached and kept after an EAGAIN
        self.dropped = 0  # refused for good (an error, or the backlog full)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def offer(self, buf: Buffer, addr: Address, arena: GcArena) -> None:
        """Send `buf` now; on EAGAIN keep it (detached from `arena`). Behind a non-empty
        backlog it waits its turn, so datagrams leave in order."""
        if not self._queue:
            try:
                self._sendto(buf.data, addr)
            except (BlockingIOError, InterruptedError):
                pass  # kept below
            except OSError:
                self.dropped += 1  # unreachable and friends: UDP is lossy
                return
            else:
                self.sent += 1
                return
        if len(self._queue) >= self.limit:
            self.dropped += 1  # left in the arena: freed at the end of the iteration
            return
        self._queue.append((arena.detach(buf), addr))
        self.kept += 1

    def flush(self) -> bool:
        """Send what waits, oldest first, until the kernel refuses again; True when empty."""
        queue = self._queue
        release = self._pool.release
        while queue:
            buf, addr = queue[0]
            try:
                self._sendto(buf.data, addr)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self.dropped += 1
            else:
                self.sent += 1
            queue.popleft()
            release(buf)
        return True

    def clear(self) -> None:
        """Give every kept buffer back (the driver stops)."""
        queue = self._queue
        while queue:
            buf, _addr = queue.popleft()
            self.dropped += 1
            self._pool.release(buf)


class ControlBacklog:
    """Control datagrams (ACKs, handshake records) the kernel refused with EAGAIN, kept in
    order until the socket is writable. Stock never loses one at its own socket (it waits for
    writability before it reads more); an ACK in particular is never retransmitted, and a lost
    ACK of the peer's key-method 2 holds the peer's new data key back until its KM2 retransmit.
    These are `bytes` the endpoint handed over (control rate, not the data path): no pool
    block is held. Bounded like SendBacklog."""

    __slots__ = ("_queue", "_sendto", "dropped", "kept", "limit", "sent")

    def __init__(self, sendto: Callable[[bytes, Address], object],
                 limit: int = DEFAULT_LIMIT) -> None:
        self._sendto = sendto
        self._queue: deque[tuple[bytes, Address]] = deque()
        self.limit = limit
        self.sent = 0
        self.kept = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def offer(self, datagram: bytes, addr: Address) -> None:
        """Send now, or keep it behind those already waiting (order is kept)."""
        if not self._queue:
            try:
                self._sendto(datagram, addr)
            except (BlockingIOError, InterruptedError):
                pass  # kept below
            except OSError:
                self.dropped += 1  # unreachable and friends: the reliability layer resends
                return
            else:
                self.sent += 1
                return
        if len(self._queue) >= self.limit:
            self.dropped += 1
            return
        self._queue.append((datagram, addr))
        self.kept += 1

    def flush(self) -> bool:
        """Send what waits, oldest first, until the kernel refuses again; True when empty."""
        queue = self._queue
        while queue:
            datagram, addr = queue[0]
            try:
                self._sendto(datagram, addr)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self.dropped += 1
            else:
                self.sent += 1
            queue.popleft()
        return True

    def clear(self) -> None:
        self.dropped += len(self._queue)
        self._queue.clear()
