"""SendBacklog: a datagram the kernel refuses with EAGAIN waits in order and leaves once the
socket takes it; a pooled one is detached from its connection's arena, survives the iteration,
and is released to its pool once sent; control bytes have nothing to release. Real sockets: a
unix datagram pair whose receive queue is filled (UDP on loopback drops at the receiver
instead of refusing the send)."""

from __future__ import annotations

import socket

from core import Buffer, BufferPool, FrameBuilder, GcArena
from tunnel.io.backlog import SendBacklog

ADDR = ("192.0.2.1", 1194)


def _full_pair() -> tuple[socket.socket, socket.socket]:
    tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tx.setblocking(False)
    rx.setblocking(False)
    while True:  # fill the queue until the kernel says EAGAIN
        try:
            tx.send(b"filler" * 10)
        except BlockingIOError:
            return tx, rx


def _pool() -> BufferPool:
    builder = FrameBuilder()
    builder.reserve("hdr", headroom=24)
    return BufferPool(builder.finalize(), 4)


def _pooled(tx: socket.socket, pool: BufferPool, limit: int = 64) -> SendBacklog[Buffer]:
    """As the driver builds it: the buffer's bytes go out, it goes back to its pool."""
    return SendBacklog(lambda buf, _addr: tx.send(buf.data), release=pool.release, limit=limit)


def _drain(rx: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(rx.recv(4096))
        except BlockingIOError:
            return got


def test_eagain_keeps_the_datagram_past_the_iteration_and_sends_it_later() -> None:
    tx, rx = _full_pair()
    pool = _pool()
    backlog = _pooled(tx, pool)
    try:
        arena = GcArena()
        buf = arena.take(pool)
        buf.append(b"the kept one")
        backlog.offer(buf, ADDR, arena.detach)
        assert (backlog.pending, backlog.kept, arena.detached) == (1, 1, 1)
        later = arena.take(pool)
        later.append(b"behind it")
        backlog.offer(later, ADDR, arena.detach)  # waits its turn behind the first
        arena.free()  # the iteration ends: the kept buffers are not the arena's any more
        assert pool.stats.in_use == 2
        assert bytes(buf.data) == b"the kept one"
        assert not backlog.flush()  # still full
        got = [d for d in _drain(rx) if not d.startswith(b"filler")]
        assert not got
        assert backlog.flush()
        got = [d for d in _drain(rx) if not d.startswith(b"filler")]
        assert got == [b"the kept one", b"behind it"]
        assert pool.stats.in_use == 0 and backlog.sent == 2
    finally:
        tx.close()
        rx.close()


def test_a_full_backlog_drops_and_the_arena_frees_what_it_refused() -> None:
    tx, rx = _full_pair()
    pool = _pool()
    backlog = _pooled(tx, pool, limit=1)
    try:
        arena = GcArena()
        for text in (b"one", b"two"):
            buf = arena.take(pool)
            buf.append(text)
            backlog.offer(buf, ADDR, arena.detach)
        assert (backlog.pending, backlog.dropped) == (1, 1)
        arena.free()
        assert pool.stats.in_use == 1  # only the kept one
        backlog.clear()  # the driver stops
        assert pool.stats.in_use == 0
    finally:
        tx.close()
        rx.close()


def test_a_socket_that_takes_it_sends_at_once() -> None:
    tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pool = _pool()
    backlog = _pooled(tx, pool)
    try:
        with GcArena() as arena:
            buf = arena.take(pool)
            buf.append(b"now")
            backlog.offer(buf, ADDR, arena.detach)
            assert backlog.pending == 0 and backlog.sent == 1 and arena.detached == 0
        assert rx.recv(64) == b"now"
        assert pool.stats.in_use == 0
    finally:
        tx.close()
        rx.close()


def test_control_datagrams_refused_with_eagain_wait_in_order_and_leave_on_writability() -> None:
    """Control bytes: an ACK the kernel refuses is kept (never lost at our own socket), later
    ones queue behind it, and all leave in order once the queue drains; no release."""
    tx, rx = _full_pair()
    control: SendBacklog[bytes] = SendBacklog(lambda data, _addr: tx.send(data), limit=3)
    try:
        for text in (b"ack 1", b"ack 2", b"record 3", b"over the bound"):
            control.offer(text, ADDR)
        assert (control.pending, control.kept, control.dropped, control.sent) == (3, 3, 1, 0)
        assert not control.flush()  # the receiver has not read yet: still refused
        fillers = _drain(rx)
        assert fillers and all(d.startswith(b"filler") for d in fillers)
        assert control.flush()
        assert _drain(rx) == [b"ack 1", b"ack 2", b"record 3"]
        assert (control.pending, control.sent) == (0, 3)
        control.offer(b"now at once", ADDR)  # an empty backlog sends straight away
        assert _drain(rx) == [b"now at once"] and control.sent == 4
        tx2, _rx2 = _full_pair()
        waiting: SendBacklog[bytes] = SendBacklog(lambda data, _addr: tx2.send(data))
        waiting.offer(b"kept", ADDR)
        waiting.clear()  # the driver stops: what waits is counted as dropped
        assert (waiting.pending, waiting.dropped) == (0, 1)
        tx2.close()
        _rx2.close()
    finally:
        tx.close()
        rx.close()


def test_a_send_error_other_than_eagain_drops_and_releases_and_the_queue_goes_on() -> None:
    """An OSError (not EAGAIN) on a kept datagram: counted as dropped, its buffer released,
    the ones behind it still sent; on the first try it is dropped and stays the arena's."""
    tx, rx = _full_pair()
    pool = _pool()
    refuse = {b"unreachable"}

    def send(buf: Buffer, _addr: tuple[str, int]) -> None:
        if bytes(buf.data) in refuse:
            raise ConnectionRefusedError("as ICMP port unreachable would")
        tx.send(buf.data)

    backlog: SendBacklog[Buffer] = SendBacklog(send, release=pool.release)
    try:
        arena = GcArena()
        for text in (b"first", b"unreachable", b"third"):
            buf = arena.take(pool)
            buf.append(text)
            backlog.offer(buf, ADDR, arena.detach)
        arena.free()
        assert (backlog.pending, pool.stats.in_use) == (3, 3)
        _drain(rx)
        assert backlog.flush()
        assert _drain(rx) == [b"first", b"third"]
        assert (backlog.sent, backlog.dropped, pool.stats.in_use) == (2, 1, 0)
        with GcArena() as arena:  # an empty backlog: an error at once is a drop, nothing kept
            buf = arena.take(pool)
            buf.append(b"unreachable")
            backlog.offer(buf, ADDR, arena.detach)
            assert (backlog.pending, backlog.dropped, arena.detached) == (0, 2, 0)
        assert pool.stats.in_use == 0
    finally:
        tx.close()
        rx.close()
