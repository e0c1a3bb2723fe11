"""Datagrams the kernel refused with EAGAIN, kept in order until the socket can take them.

One bounded ordered queue, `SendBacklog[T]`, serves both kinds the datagram driver sends
outside its data batches:

* pooled datagrams (`Buffer`) the server sealed for a connection (client-to-client). Such a
  buffer belongs to that connection's arena until the end of the event-loop iteration
  (tunnel/protocol/memory.py); when it is kept, `offer`'s `keep` callback (the arena's
  `detach`) takes it out of the arena, so the iteration's `free()` leaves it alone, and once
  it is sent, or given up, `release` (the pool's) gives it back;
* control datagrams (`bytes`: ACKs, handshake records) the endpoint handed over. Stock never
  loses one at its own socket (it waits for writability before it reads more); an ACK in
  particular is never retransmitted, and a lost ACK of the peer's key-method 2 holds the
  peer's new data key back until its KM2 retransmit. Nothing to release.

Bounded: beyond `limit` datagrams waiting, a refused one is dropped (a pooled one stays in its
arena and is freed with it), as a router's full queue would. The driver flushes the control
queue before the pooled one on writability.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_LIMIT", "SendBacklog"]

Address = tuple[str, int]
DEFAULT_LIMIT = 64

T = TypeVar("T")


class SendBacklog(Generic[T]):
    """`send(item, addr)` now, or on EAGAIN keep `item` behind those already waiting."""

    __slots__ = ("_queue", "_release", "_send", "dropped", "kept", "limit", "sent")

    def __init__(
        self, send: Callable[[T, Address], object],
        release: Callable[[T], object] | None = None, limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._send = send
        self._release = release  # what a kept item goes back to once sent or given up
        self._queue: deque[tuple[T, Address]] = deque()
        self.limit = limit
        self.sent = 0  # datagrams handed to the kernel (at once or later)
        self.kept = 0  # datagrams kept after an EAGAIN
        self.dropped = 0  # refused for good (an error, the backlog full, or cleared)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def offer(self, item: T, addr: Address, keep: Callable[[T], object] | None = None) -> None:
        """Send `item` now; on EAGAIN keep it (after `keep(item)`: a pooled buffer's arena
        detach). Behind a non-empty backlog it waits its turn, so datagrams leave in order.
        An item not kept stays its caller's (a pooled one is freed with its arena)."""
        if not self._queue:
            try:
                self._send(item, addr)
            except (BlockingIOError, InterruptedError):
                pass  # kept below
            except OSError:
                self.dropped += 1  # unreachable and friends: UDP is lossy
                return
            else:
                self.sent += 1
                return
        if len(self._queue) >= self.limit:
            self.dropped += 1
            return
        if keep is not None:
            keep(item)
        self._queue.append((item, addr))
        self.kept += 1

    def flush(self) -> bool:
        """Send what waits, oldest first, until the kernel refuses again; True when empty."""
        queue = self._queue
        release = self._release
        while queue:
            item, addr = queue[0]
            try:
                self._send(item, addr)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self.dropped += 1
            else:
                self.sent += 1
            queue.popleft()
            if release is not None:
                release(item)
        return True

    def clear(self) -> None:
        """Give up what waits (the driver stops): counted as dropped, each item released."""
        queue = self._queue
        release = self._release
        while queue:
            item, _addr = queue.popleft()
            self.dropped += 1
            if release is not None:
                release(item)
