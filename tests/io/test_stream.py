"""OpenVPN's TCP framing over a real socket pair: cutting, carrying over, refusing, bounding."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from core import FrameBuilder
from tunnel.io.stream import (
    LENGTH_PREFIX,
    FramingError,
    StreamConnection,
    register_stream_framing,
)

MAX_PACKET = 1600


@pytest.fixture
def pair() -> Iterator[tuple[StreamConnection, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = StreamConnection(ours, ("peer", 1), max_packet=MAX_PACKET,
                            queue_limit=4 * (MAX_PACKET + 2), now=0.0)
    try:
        yield conn, theirs
    finally:
        conn.close()
        theirs.close()


def framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


def receive_all(conn: StreamConnection) -> list[bytes]:
    got: list[bytes] = []
    scratch = memoryview(bytearray(64 * 1024 + MAX_PACKET))
    assert conn.receive(scratch, lambda view: got.append(bytes(view)))
    return got


def test_prefix_is_registered_headroom() -> None:
    builder = FrameBuilder(tun_mtu=1500)
    register_stream_framing(builder)
    frame = builder.finalize()
    assert frame.overhead == LENGTH_PREFIX
    assert frame.headroom >= LENGTH_PREFIX


def test_packets_are_cut_at_their_prefixes_and_a_partial_one_carried_over(pair) -> None:  # type: ignore[no-untyped-def]
    conn, peer = pair
    stream = framed(b"a" * 10) + framed(b"b" * 1500) + framed(b"c" * 300)
    peer.sendall(stream[:700])
    assert receive_all(conn) == [b"a" * 10]
    peer.sendall(stream[700:1514])
    assert receive_all(conn) == [b"b" * 1500]
    peer.sendall(stream[1514:])
    assert receive_all(conn) == [b"c" * 300]
    # one byte at a time still works (the prefix itself split)
    for byte in framed(b"xyz"):
        peer.sendall(bytes([byte]))
        got = receive_all(conn)
    assert got == [b"xyz"]


@pytest.mark.parametrize("length", [0, MAX_PACKET + 1, 0xFFFF])
def test_a_length_the_frame_does_not_allow_is_a_framing_error(pair, length: int) -> None:  # type: ignore[no-untyped-def]
    conn, peer = pair
    peer.sendall(framed(b"ok") + length.to_bytes(2, "big") + b"x" * 10)
    scratch = memoryview(bytearray(64 * 1024 + MAX_PACKET))
    got: list[bytes] = []
    with pytest.raises(FramingError):
        conn.receive(scratch, lambda view: got.append(bytes(view)))
    assert got == [b"ok"]  # what came before the bad prefix was delivered


def test_peer_close_is_reported(pair) -> None:  # type: ignore[no-untyped-def]
    conn, peer = pair
    peer.close()
    scratch = memoryview(bytearray(64 * 1024))
    assert conn.receive(scratch, lambda view: None) is False


def test_the_output_queue_is_bounded_and_drops_are_counted(pair) -> None:  # type: ignore[no-untyped-def]
    conn, peer = pair
    packet = b"p" * MAX_PACKET
    accepted = sum(conn.queue_packet(packet) for _ in range(10))
    assert accepted == 4 and conn.tx_dropped == 6
    assert conn.pending == 4 * (MAX_PACKET + 2)
    assert conn.flush()
    data = b""
    while len(data) < 4 * (MAX_PACKET + 2):
        data += peer.recv(65536)
    assert data == framed(packet) * 4


def test_a_slow_reader_keeps_the_rest_queued_without_blocking(pair) -> None:  # type: ignore[no-untyped-def]
    conn, _peer = pair
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn.queue_limit = 10**7
    for _ in range(2000):  # ~3 MB: more than the socket buffers take
        conn.queue_packet(b"q" * 1500)
    assert conn.flush() is False  # returned at once, the kernel took part of it
    assert 0 < conn.pending < 2000 * 1502
