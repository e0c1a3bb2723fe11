"""TSO super-packets sealed in batch (tunnel/io/tso_rows.py + DataKey.seal_rows): every
datagram is byte for byte what cutting the super-packet with the kernel's segmentation
(`offload.split_gso`) and sealing each segment with `DataKey.seal` gives, packet-ids included,
and the peer opens them, with the rows written by the extension's pass (tunnel/_tso.c) and by
the numpy form. No root: frames built here; the GSO send over loopback UDP."""

from __future__ import annotations

import os
import random
import socket

import pytest

from core import BufferPool
from tests.io.test_tso import super4
from tunnel.io.gro_rows import RunOpener, RunRows
from tunnel.io.gso import GsoSender, enable_gro, gro_segment_size
from tunnel.io.offload import VNET_HDR_SIZE, TunCoalescer, split_gso
from tunnel.io.tso_rows import SuperCut
from tunnel.protocol.datachannel import DataKey
from tunnel.protocol.datakey import PACKET_ID_MAX, PacketIdExhausted
from tunnel.protocol.prf import DirectionKey
from tunnel.protocol.replay import ReplayWindow
from tunnel.protocol.verdicts import DROPPED, TO_TUN
from tunnel.runtime import make_frame


def keys(cipher: str = "AES-256-GCM") -> tuple[DataKey, DataKey, DataKey]:
    """A sender, a second sender with the same keys (the reference), and the receiver."""
    length = 16 if cipher == "AES-128-GCM" else 32
    a = DirectionKey(os.urandom(length), os.urandom(8))
    b = DirectionKey(os.urandom(length), os.urandom(8))
    made = [DataKey(key_id=2, cipher=cipher, encrypt=a, decrypt=b, replay=ReplayWindow())
            for _ in range(2)]
    rx = DataKey(key_id=2, cipher=cipher, encrypt=b, decrypt=a, replay=ReplayWindow(256))
    return made[0], made[1], rx


def reference(frame: bytearray, key: DataKey, peer_id: int | None) -> list[bytes]:
    pool = BufferPool(make_frame(), 2)
    out = []
    for segment in split_gso(memoryview(frame)):
        buf = pool.acquire()
        buf.append(segment)
        key.seal(buf, peer_id)
        out.append(bytes(buf.data))
        pool.release(buf)
    return out


def batch(cut: SuperCut, frame: bytearray, key: DataKey, peer_id: int | None) -> list[bytes]:
    assert cut.load(memoryview(frame), len(frame) - VNET_HDR_SIZE)
    cut.fill()
    key.seal_rows(cut, peer_id)
    return [bytes(d) for d in cut.datagrams()]


@pytest.mark.parametrize("mss,length", [(1448, 1448 * 45), (1348, 64000), (1388, 1389),
                                        (1000, 999), (1000, 3000), (536, 65000 - 52)])
@pytest.mark.parametrize("options", [b"", bytes([1, 1, 8, 10]) + bytes(8)])
@pytest.mark.parametrize("peer_id", [7, None])
@pytest.mark.parametrize(
    "native", [False, pytest.param(True, marks=pytest.mark.native_aead)], ids=["numpy", "native"])
def test_rows_are_the_segments_sealed_one_by_one(mss: int, length: int, options: bytes,
                                                 peer_id: int | None, native: bool) -> None:
    sender, twin, rx = keys()
    cut = SuperCut(native=native)
    assert (cut._native is not None) is native
    rng = random.Random(mss + length)
    for flags in (0x18, 0x19 | 0x80, 0x10):  # PSH, FIN+PSH+CWR, plain ACK; the cut is reused
        payload = rng.randbytes(length)
        frame = super4(payload, mss, flags=flags, options=options)
        expected = reference(bytearray(frame), twin, peer_id)
        ours = batch(cut, frame, sender, peer_id)
        assert ours == expected
        assert cut.segment() == len(ours[0]) or len(ours) == 1
        assert all(len(d) == cut.segment() for d in ours[:-1])
        assert cut.plain_bytes + cut.count * cut.overhead == sum(map(len, ours))
    assert sender.send_packet_id == twin.send_packet_id == sender.sealed
    pool = BufferPool(make_frame(), 2)
    for datagram in ours:  # and the peer opens them
        buf = pool.acquire()
        buf.append(datagram)
        assert rx.open(buf, 1.0)
        pool.release(buf)


@pytest.mark.native_aead
@pytest.mark.parametrize("mss,length", [(1448, 1448 * 45), (1000, 999), (1000, 2999),
                                        (536, 65000 - 52)])
def test_the_native_pass_writes_the_rows_the_numpy_form_writes(mss: int, length: int) -> None:
    """Whole rows, padding included, for random payloads, flags and header fields; and a cut
    that does not fit its rows is refused before anything is written."""
    from tunnel._aead import fill_segments

    rng = random.Random(length)
    native, numpy_form = SuperCut(native=True), SuperCut(native=False)
    for flags in (0x18, 0x19 | 0x80, 0x10, 0x11):
        frame = super4(rng.randbytes(length), mss, flags=flags,
                       options=rng.choice((b"", bytes([1, 1, 8, 10]) + bytes(8))))
        frame[VNET_HDR_SIZE + 4 : VNET_HDR_SIZE + 6] = rng.randbytes(2)  # IP id
        frame[VNET_HDR_SIZE + 24 : VNET_HDR_SIZE + 28] = rng.randbytes(4)  # sequence
        for cut in (native, numpy_form):
            assert cut.load(memoryview(frame), len(frame) - VNET_HDR_SIZE)
            cut.run.tailroom_view()[:] = bytes(len(cut.run.tailroom_view()))
            cut.fill()
        used = native.count * native._stride
        assert (native.run.tailroom_view()[:used].tobytes()
                == numpy_form.run.tailroom_view()[:used].tobytes())
    packet = memoryview(super4(b"x" * 3000, 1000))[VNET_HDR_SIZE:]  # 3 segments, hlen 40
    rows = bytearray(5000)
    with pytest.raises(ValueError):
        fill_segments(rows, 2000, 3, packet, 40, 1000, 24)  # no room for the third row
    with pytest.raises(ValueError):
        fill_segments(rows, 2000, 1, packet, 40, 1000, 24)  # the count does not cut it
    with pytest.raises(ValueError):
        fill_segments(rows, 1000, 2, packet, 40, 1000, 24)  # a row narrower than a segment
    assert rows == bytes(5000)
    fill_segments(bytearray(6000), 2000, 3, packet, 40, 1000, 24)


def test_chacha_and_aes128_too() -> None:
    for cipher in ("CHACHA20-POLY1305", "AES-128-GCM"):
        sender, twin, _rx = keys(cipher)
        frame = super4(os.urandom(20000), 1400)
        assert batch(SuperCut(), frame, sender, 1) == reference(bytearray(frame), twin, 1)


def test_what_this_path_does_not_cut_is_refused() -> None:
    cut = SuperCut()
    frame = super4(b"x" * 3000, 1000)
    frame[VNET_HDR_SIZE + 9] = 17  # not TCP
    assert not cut.load(memoryview(frame), len(frame) - VNET_HDR_SIZE)
    assert not cut.load(memoryview(super4(b"x" * 3000, 999)), 3000 + 40)  # odd MSS
    assert not cut.load(memoryview(super4(b"x" * 3000, 0)), 3000 + 40)  # no segment size
    syn = super4(b"x" * 3000, 1000, flags=0x12)
    assert not cut.load(memoryview(syn), len(syn) - VNET_HDR_SIZE)
    tiny = super4(b"x" * 60000, 100)  # 600 segments: the per-segment way
    assert not cut.load(memoryview(tiny), len(tiny) - VNET_HDR_SIZE)


def test_packet_id_limit_is_checked_before_anything() -> None:
    sender, _twin, _rx = keys()
    sender._send_pid = PACKET_ID_MAX - 3
    cut = SuperCut()
    frame = super4(os.urandom(5000), 1000)  # 5 segments: one more than are left
    assert cut.load(memoryview(frame), len(frame) - VNET_HDR_SIZE)
    cut.fill()
    with pytest.raises(PacketIdExhausted):
        sender.seal_rows(cut, 1)
    assert sender.send_packet_id == PACKET_ID_MAX - 3 and sender.sealed == 0
    sender._send_pid = 10
    with pytest.raises(ValueError):
        sender.seal_rows(cut, 1 << 24)
    assert sender.send_packet_id == 10 and sender.sealed == 0


def test_rows_leave_as_gso_runs_and_arrive_whole() -> None:
    """`GsoSender.send_rows`: the row views as the iov of one sendmsg per run (two runs for
    a 64 KB super-packet), every datagram arriving as it was sealed."""
    sender, twin, _rx = keys()
    cut = SuperCut()
    frame = super4(os.urandom(1348 * 47 + 100), 1348, options=bytes([1, 1, 8, 10]) + bytes(8))
    expected = reference(bytearray(frame), twin, 5)
    batch(cut, frame, sender, 5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        gro = enable_gro(rx)
        rx.settimeout(2)
        gso = GsoSender(tx)
        gso.send_rows(cut.datagrams(), cut.segment(), rx.getsockname())
        assert gso.sent == len(expected) and not gso.dropped
        got: list[bytes] = []
        while len(got) < len(expected):
            data, anc, _flags, _addr = rx.recvmsg(65536, socket.CMSG_SPACE(4))
            step = gro_segment_size(anc, len(data)) if gro else len(data)
            got.extend(data[i : i + step] for i in range(0, len(data), step))
        assert got == expected
        if gso.enabled:
            assert gso.runs == 2  # 48 datagrams of 1424 bytes: two runs under 64 KB


class KeyEndpoint:
    """The receiving side of `Client.open_rows` over a bare DataKey: per row, the key's
    verdict (the session's checks are `Session.open_rows`', tested with the e2e runs)."""

    def __init__(self, key: DataKey) -> None:
        self.key = key

    def open_rows(self, rows: RunRows, addr: tuple[str, int], now: float) -> list[int] | None:
        oks = self.key.open_rows(rows, now)
        if oks is None:
            return None
        return [TO_TUN if ok else DROPPED for ok in oks]


def gro_run(datagrams: list[bytes]) -> tuple[memoryview, memoryview, int, int]:
    run = b"".join(datagrams)
    segment = len(datagrams[0])
    return memoryview(run), memoryview(run)[segment:], segment, len(run)


@pytest.mark.parametrize("peer_id", [3, None])
def test_a_gro_run_is_opened_in_batch_and_coalesced_into_one_frame(peer_id: int | None) -> None:
    """Sealed rows -> one GRO run -> RunOpener: one GSO frame whose segments (as the kernel
    cuts it: split_gso) are exactly the original segments; every packet-id checked."""
    sender, _twin, rx = keys()
    options = bytes([1, 1, 8, 10]) + bytes(8)
    frame = super4(os.urandom(1348 * 30), 1348, flags=0x10, options=options)
    segments = [bytes(s) for s in split_gso(memoryview(bytearray(frame)))]
    datagrams = batch(SuperCut(), frame, sender, peer_id)
    frames: list[bytes] = []
    coalescer = TunCoalescer(lambda f: frames.append(bytes(f)) is None, udp=False)
    opener = RunOpener(KeyEndpoint(rx).open_rows, coalescer)
    first, rest, segment, size = gro_run(datagrams)
    assert opener.take(first, rest, segment, size, ("10.0.0.1", 1194), 1.0) == (30, 0)
    coalescer.flush()
    assert len(frames) == 1 and coalescer.packets == 30 and coalescer.coalesced == 30
    assert [bytes(s) for s in split_gso(memoryview(frames[0]))] == segments
    assert rx.opened == 30
    # The same run again: authentic, but every packet-id is a replay; nothing is written.
    frames.clear()
    assert opener.take(first, rest, segment, size, ("10.0.0.1", 1194), 1.0) == (30, 2)
    coalescer.flush()
    assert not frames and rx.replays == 30 and rx.opened == 30


def test_a_forged_datagram_in_a_run_is_dropped_alone() -> None:
    sender, _twin, rx = keys()
    frame = super4(os.urandom(1000 * 6), 1000, flags=0x10)
    segments = [bytes(s) for s in split_gso(memoryview(bytearray(frame)))]
    datagrams = batch(SuperCut(), frame, sender, 1)
    forged = bytearray(datagrams[2])
    forged[-1] ^= 1
    datagrams[2] = bytes(forged)
    frames: list[bytes] = []
    coalescer = TunCoalescer(lambda f: frames.append(bytes(f)) is None, udp=False)
    opener = RunOpener(KeyEndpoint(rx).open_rows, coalescer)
    assert opener.take(*gro_run(datagrams), ("10.0.0.1", 1194), 1.0) == (6, 2)
    coalescer.flush()
    assert rx.auth_failures == 1 and rx.opened == 5 and rx.replay.highest == 6
    delivered = [bytes(s) for f in frames for s in split_gso(memoryview(f))]
    assert delivered == segments[:2] + segments[3:]


def test_a_forged_packet_id_in_a_run_moves_no_replay_window() -> None:
    """Authentication before the replay window, in batch as in `DataKey.open`: a row whose
    packet-id was rewritten far ahead fails its tag and leaves the window where the authentic
    rows put it (checked first, it would have moved it past them)."""
    sender, _twin, rx = keys()
    frame = super4(os.urandom(1000 * 6), 1000, flags=0x10)
    datagrams = batch(SuperCut(), frame, sender, 1)
    authentic = datagrams[0]
    forged = bytearray(authentic)
    forged[4:8] = (1_000_000).to_bytes(4, "big")  # P_DATA_V2: op|peer-id, then packet-id
    datagrams[0] = bytes(forged)
    frames: list[bytes] = []
    coalescer = TunCoalescer(lambda f: frames.append(bytes(f)) is None, udp=False)
    opener = RunOpener(KeyEndpoint(rx).open_rows, coalescer)
    assert opener.take(*gro_run(datagrams), ("10.0.0.1", 1194), 1.0) == (6, 2)
    assert rx.auth_failures == 1 and rx.replays == 0 and rx.opened == 5
    assert rx.replay.highest == 6
    # The authentic datagram with packet-id 1, late: the forged copy marked nothing seen.
    buf = BufferPool(make_frame(), 1).acquire()
    buf.append(authentic)
    assert rx.open(buf, 1.0) and rx.replays == 0 and rx.opened == 6


def test_a_run_that_is_not_data_is_left_alone() -> None:
    _sender, _twin, rx = keys()
    coalescer = TunCoalescer(lambda f: True, udp=False)
    opener = RunOpener(KeyEndpoint(rx).open_rows, coalescer)
    control = [bytes([0x20]) + os.urandom(99) for _ in range(3)]  # P_CONTROL_V1
    assert opener.take(*gro_run(control), ("10.0.0.1", 1194), 1.0) == (0, 0)
    mixed = [bytes([0x48]) + os.urandom(99), bytes([0x49]) + os.urandom(99)]  # two key ids
    assert opener.take(*gro_run(mixed), ("10.0.0.1", 1194), 1.0) == (0, 0)
    assert rx.auth_failures == rx.replays == rx.opened == rx.misrouted == 0


def test_a_run_longer_than_the_rows_is_taken_in_chunks() -> None:
    sender, _twin, rx = keys()
    pool = BufferPool(make_frame(), 2)
    datagrams, plains = [], []
    for i in range(150):  # small UDP packets: one GRO run of 150
        buf = pool.acquire()
        plains.append(bytes([0x45]) + bytes(19) + i.to_bytes(2, "big") * 30)
        buf.append(plains[-1])
        sender.seal(buf, 1)
        datagrams.append(bytes(buf.data))
        pool.release(buf)
    frames: list[bytes] = []
    coalescer = TunCoalescer(lambda f: frames.append(bytes(f)) is None, udp=False)
    opener = RunOpener(KeyEndpoint(rx).open_rows, coalescer)
    assert opener.take(*gro_run(datagrams), ("10.0.0.1", 1194), 1.0) == (150, 0)
    assert [f[10:] for f in frames] == plains  # (not TCP: one by one)
    assert rx.opened == 150 and rx.replay.highest == 150


def test_runs_past_one_frame_are_coalesced_as_the_per_packet_path_coalesces_them() -> None:
    """Two super-packets' worth of one flow (~100 KB) arriving as GRO runs of 40: the batch
    path fills the pending frame in bulk, flushes it when full and goes on in a new one;
    the frames written are byte for byte those of the same segments written one by one."""
    sender, _twin, rx = keys()
    mss, count = 1348, 45
    frames_in = [super4(os.urandom(mss * count), mss, flags=0x10) for _ in range(2)]
    seq_at = VNET_HDR_SIZE + 20 + 4
    second = (int.from_bytes(frames_in[0][seq_at : seq_at + 4], "big") + mss * count) & 0xFFFFFFFF
    frames_in[1][seq_at : seq_at + 4] = second.to_bytes(4, "big")
    segments = [bytes(s) for f in frames_in for s in split_gso(memoryview(bytearray(f)))]
    datagrams = [d for f in frames_in for d in reference(f, sender, 7)]
    assert len(segments) == len(datagrams) == 2 * count

    batched: list[bytes] = []
    coalescer = TunCoalescer(lambda f: batched.append(bytes(f)) is None, udp=False)
    opener = RunOpener(KeyEndpoint(rx).open_rows, coalescer)
    for start in range(0, len(datagrams), 40):
        run = datagrams[start : start + 40]
        assert opener.take(*gro_run(run), ("10.0.0.1", 1194), 1.0) == (len(run), 0)
    coalescer.flush()

    one_by_one: list[bytes] = []
    reference_coalescer = TunCoalescer(lambda f: one_by_one.append(bytes(f)) is None, udp=False)
    for segment in segments:
        reference_coalescer.write_row(memoryview(segment),
                                      memoryview(bytearray(VNET_HDR_SIZE) + segment))
    reference_coalescer.flush()
    assert rx.opened == len(datagrams)
    assert batched == one_by_one
    assert len(batched) == 2  # 90 segments of 1348 bytes: one full frame and the rest
    assert coalescer.packets == reference_coalescer.packets == len(datagrams)
    assert coalescer.coalesced == reference_coalescer.coalesced


@pytest.mark.native_aead
def test_the_native_train_check_decides_as_the_numpy_rules_decide() -> None:
    """`TunCoalescer.write_rows`' merge rules, natively (tunnel/_tso.c tcp_train) and in
    numpy (`_train`): the same verdict on a clean train and on each rule broken in one row
    (length, fragment, flags, PSH before the last, sequence, every compared header byte,
    and bytes the rules leave free: id, checksums, window)."""
    import numpy as np

    from tunnel._aead import tcp_train

    mss, count, at = 1348, 12, 24
    options = bytes([1, 1, 8, 10]) + bytes(8)
    frame = super4(os.urandom(mss * count), mss, flags=0x10, options=options)
    segments = [bytes(s) for s in split_gso(memoryview(bytearray(frame)))]
    size = len(segments[0])
    hlen = size - mss
    stride = (at + size + 16 + 15) & ~15
    clean = np.zeros((count, stride), np.uint8)
    for row, segment in zip(clean, segments, strict=True):
        row[at : at + size] = np.frombuffer(segment, np.uint8)
    coalescer = TunCoalescer(lambda f: True, udp=False)
    cases: list[tuple[int, int, int]] = [(-1, 0, 0)]  # (row, byte, xor): -1 = untouched
    for row in (0, 5, count - 1):
        for byte in range(hlen):
            cases.append((row, byte, 0x01))
        cases.append((row, 33, 0x08))  # PSH
    verdicts: set[bool] = set()
    for row, byte, xor in cases:
        rows = clean.copy()
        if row >= 0:
            rows[row, at + byte] ^= xor
        native = tcp_train(rows, rows.strides[0], count, at, size, hlen)
        numpy_form = coalescer._train(rows[:count, at : at + size], count, size, hlen)
        assert native is numpy_form, (row, byte, xor)
        verdicts.add(native)
    assert verdicts == {True, False}
    with pytest.raises(ValueError):
        tcp_train(clean, stride, count + 1, at, size, hlen)  # more rows than there are
