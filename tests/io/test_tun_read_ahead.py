"""A TSO device's read-ahead (TunDevice over TUNSETOFFLOAD), the Python loop and the
extension's (tunnel/_readahead.c), on frames crafted as the kernel hands them over: each
read(2) one frame, a virtio-net header first. A SOCK_SEQPACKET pair keeps those boundaries
and reports EAGAIN and POLLIN as a TUN queue does, so the reader runs its real system calls
here without root (tests/e2e/test_tun.py runs it on a real TUN device).

Both loops must serve the same packets in the same order with the same counts: partial
checksums completed where they lie, frames too short for a packet and offsets that do not
fit dropped and counted, a super-packet left where it lies behind the frames before it, a
read-ahead stopped at its limit and taken up again, a lone frame ended by a poll."""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import struct
from collections.abc import Iterator

import pytest

from tunnel.io.tun import TunDevice
from tunnel.protocol.checksum import internet_sum

SRC, DST = ipaddress.IPv4Address("10.9.0.1"), ipaddress.IPv4Address("10.9.0.2")
VNET = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
NEEDS_CSUM, GSO_TCPV4 = 1, 1

MODES = pytest.mark.parametrize(
    "native", [False, pytest.param(True, marks=pytest.mark.native_aead)],
    ids=["python", "native"])


def udp_frame(payload: bytes, *, partial: bool = True, csum_offset: int = 6) -> bytes:
    """An IPv4/UDP packet as a TSO device hands it over: with `partial`, NEEDS_CSUM and the
    field holding the pseudo-header sum; else complete (no flag, checksum 0: none)."""
    size = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + size, 7, 0, 64, 17, 0, SRC.packed,
                     DST.packed)
    pseudo = SRC.packed + DST.packed + struct.pack("!BBH", 0, 17, size)
    check = internet_sum(pseudo) if partial else 0
    udp = struct.pack("!HHHH", 4000, 9, size, check) + payload
    header = VNET.pack(NEEDS_CSUM if partial else 0, 0, 0, 0, 20 if partial else 0,
                       csum_offset if partial else 0)
    return header + ip + udp


def verifies(packet: bytes) -> bool:
    """The UDP checksum of a served packet sums to all ones over pseudo-header and datagram."""
    udp = packet[20:]
    pseudo = packet[12:20] + bytes((0, 17)) + len(udp).to_bytes(2, "big")
    return internet_sum(pseudo + udp) == 0xFFFF


@pytest.fixture
def pair() -> Iterator[tuple[TunDevice, socket.socket]]:
    kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    kernel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dev = TunDevice(os.dup(ours.fileno()), "seq0", vnet_hdr=True, tso=True)
    ours.close()
    try:
        yield dev, kernel
    finally:
        dev.close()
        kernel.close()


def served(dev: TunDevice, room: memoryview) -> list[bytes]:
    """Every packet `read_packet` serves until it reports the device drained; each one's
    header zero (plain, complete)."""
    out = []
    while size := dev.read_packet(room):
        assert room[: dev.read_offset] == bytes(dev.read_offset)
        out.append(bytes(room[dev.read_offset : dev.read_offset + size]))
    return out


def use(dev: TunDevice, native: bool) -> None:
    if native:
        assert dev.native_read_ahead, "the extension's read-ahead is not built"
    dev.native_read_ahead = native


@MODES
def test_a_burst_is_served_complete_in_order_and_the_bad_frames_counted(
        pair: tuple[TunDevice, socket.socket], native: bool) -> None:
    dev, kernel = pair
    use(dev, native)
    rng = random.Random(5)
    sizes = [1, 2, 63, 64, 511, 640, 641, 1371, 1372, 1400, 1471, 1472]
    sent: list[bytes] = []
    for n in range(150):  # more than one read-ahead (64 frames) holds
        payload = bytes(rng.randrange(256) for _ in range(sizes[n % len(sizes)]))
        if n == 7:
            kernel.send(b"\0" * 12)  # shorter than any packet behind its header: dropped
        if n == 20:
            kernel.send(udp_frame(payload, csum_offset=len(payload) + 7))  # field past the end
        kernel.send(udp_frame(payload, partial=n % 5 != 0))  # some already complete
        sent.append(payload)
    room = memoryview(bytearray(2048))
    got = served(dev, room)
    assert all(verifies(p) or p[26:28] == b"\0\0" for p in got)
    assert [p[28:] for p in got] == sent
    assert sum(verifies(p) for p in got) >= 120  # the partial ones all completed
    assert dev.rx_packets == 150 and dev.rx_dropped == 2
    assert not dev.holds() and not dev.waiting()


@MODES
def test_a_super_packet_waits_behind_the_frames_read_before_it(
        pair: tuple[TunDevice, socket.socket], native: bool) -> None:
    """Frames before it are served first; a super-packet the segmenter cannot cut (not TCP)
    is dropped and counted; the frames behind it are read after it."""
    dev, kernel = pair
    use(dev, native)
    before = [udp_frame(bytes([n]) * 100) for n in range(3)]
    bogus = bytearray(udp_frame(b"x" * 3000, partial=False))
    VNET.pack_into(bogus, 0, NEEDS_CSUM, GSO_TCPV4, 28, 1400, 20, 16)
    after = [udp_frame(bytes([n]) * 50) for n in range(3, 5)]
    for frame in [*before, bytes(bogus), *after]:
        kernel.send(frame)
    got = served(dev, memoryview(bytearray(2048)))
    assert [p[28:] for p in got] == [bytes([n]) * (100 if n < 3 else 50) for n in range(5)]
    assert all(verifies(p) for p in got)
    assert dev.rx_packets == 5 and dev.rx_dropped == 1


@MODES
def test_a_lone_frame_ends_the_read_ahead_without_a_failing_read(
        pair: tuple[TunDevice, socket.socket], native: bool) -> None:
    dev, kernel = pair
    use(dev, native)
    kernel.send(udp_frame(b"ping" * 10))
    room = memoryview(bytearray(2048))
    size = dev.read_packet(room)
    assert size == 28 + 40 and verifies(bytes(room[10 : 10 + size]))
    assert not dev.holds() and not dev.waiting()  # the poll found it alone: no read asked
    assert dev.read_packet(room) == 0


@MODES
def test_a_device_that_reads_nothing_forever_is_bounded(
        pair: tuple[TunDevice, socket.socket], native: bool) -> None:
    """A read of 0 bytes (the peer gone here; a runt frame on a TUN) is dropped, and one
    read-ahead takes at most its limit of them: the call returns."""
    dev, kernel = pair
    use(dev, native)
    kernel.close()
    assert dev.read_packet(memoryview(bytearray(2048))) == 0
    assert dev.rx_dropped == 64 and dev.rx_packets == 0


@pytest.mark.native_aead
def test_the_native_read_ahead_refuses_an_area_it_cannot_stage_in() -> None:
    from tunnel._aead import read_ahead

    with pytest.raises(ValueError):
        read_ahead(0, bytearray(100), [], 100, 64)
    with pytest.raises(TypeError):
        read_ahead(0, bytearray(100), (), 10, 64)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        read_ahead(-1, bytearray(100), [], 10, 64)
