"""GsoSender and GRO reads over loopback UDP: datagram boundaries survive both ways."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tunnel.io.gso import (
    GRO_BUFFER_SIZE,
    GRO_CMSG_SPACE,
    GSO_MAX_SEGMENTS,
    GsoSender,
    enable_gro,
    gro_segment_size,
    gso_supported,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.setblocking(False)
    try:
        yield tx, rx
    finally:
        tx.close()
        rx.close()


def receive_all(rx: socket.socket) -> list[bytes]:
    """Every datagram waiting, GRO runs cut apart at their segment size."""
    view = memoryview(bytearray(GRO_BUFFER_SIZE))
    out: list[bytes] = []
    while True:
        try:
            size, ancdata, _flags, _addr = rx.recvmsg_into([view], GRO_CMSG_SPACE)
        except BlockingIOError:
            return out
        segment = gro_segment_size(ancdata, size)
        out.extend(bytes(view[start : min(start + segment, size)])
                   for start in range(0, size, segment))


def datagrams(sizes: list[int]) -> list[bytes]:
    return [bytes([i % 256]) * size for i, size in enumerate(sizes)]


@pytest.mark.parametrize("gso", [True, False])
def test_runs_arrive_as_the_datagrams_that_were_queued(
    pair: tuple[socket.socket, socket.socket], gso: bool
) -> None:
    tx, rx = pair
    if gso and not (gso_supported(tx) and enable_gro(rx)):
        pytest.skip("kernel without UDP GSO/GRO")
    if gso:
        enable_gro(rx)
    addr = rx.getsockname()
    sender = GsoSender(tx, enabled=gso)
    # Equal sizes, a shorter one (ends a run), a larger one (starts a new run), more than
    # GSO_MAX_SEGMENTS small ones, and enough bytes to hit the byte limit.
    sizes = [1424] * 10 + [300] + [1500] * 3 + [64] * (GSO_MAX_SEGMENTS + 5) + [1424] * 50
    sent = datagrams(sizes)
    for data in sent:
        sender.add(memoryview(data), addr)
    sender.flush()
    assert sender.sent == len(sent) and sender.dropped == 0
    if gso:
        assert sender.runs < len(sent) // 10
    assert receive_all(rx) == sent


def test_a_new_address_ends_the_run(pair: tuple[socket.socket, socket.socket]) -> None:
    tx, rx = pair
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.setblocking(False)
    try:
        for s in (rx, other):
            enable_gro(s)
        sender = GsoSender(tx)
        a, b = rx.getsockname(), other.getsockname()
        for i in range(6):
            sender.add(memoryview(bytes([i]) * 100), a if i % 3 else b)
        sender.flush()
        assert receive_all(rx) == [bytes([i]) * 100 for i in (1, 2, 4, 5)]
        assert receive_all(other) == [bytes([i]) * 100 for i in (0, 3)]
    finally:
        other.close()


def test_a_refused_run_counts_its_datagrams_dropped() -> None:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender = GsoSender(tx)
        # No route to a multicast address without an interface is not what we want here;
        # an unspecified port 0 destination is refused by sendmsg/sendto (EINVAL) at once.
        for _ in range(3):
            sender.add(memoryview(b"x" * 50), ("127.0.0.1", 0))
        sender.flush()
        assert sender.sent == 0 and sender.dropped == 3
    finally:
        tx.close()
