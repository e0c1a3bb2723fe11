#!/usr/bin/env python3
"""In-process benchmark of the data path's batch I/O, and its allocation check. No root.

One direction of a TCP flow through the driver's own code (tunnel/io/datapath.py: the
functions `Driver` calls), minus the TUN device and the session layers: an in-memory
`PacketDevice` -> `outbound_batch` (read into one pooled buffer, seal, `GsoSender.queue`; runs
on loopback UDP, one sendmsg each) -> `inbound_batch` (GRO read, one recvmsg per run, cut into
datagrams copied into a pooled buffer, open) -> `DeviceOutput` (TunCoalescer: merged GSO
frames, handed to the device's `write_frame`, which only counts).

1. Speed: microseconds per packet, median of interleaved repetitions, next to the bare AEAD
   (encrypt_into + decrypt_into) on the same bytes: a regression guard for the per-packet
   Python cost (printed, never failed on: the machine is shared and noisy).
2. Memory: the same loop under tracemalloc after a warm-up; exit status 1 if anything is
   retained per packet or the pool leaks. (Transient views and ints come and go; a per-packet
   `bytes` copy would show as peak growth of about a packet.)

Run from the repository root: `python3 scripts/bench_io.py [--quick]`.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import struct
import sys
import time
import tracemalloc
from pathlib import Path

try:
    import core  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # run from a checkout without installing: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core import Buffer, BufferPool
from tunnel.io.datapath import DeviceOutput, UdpLink, inbound_batch, outbound_batch
from tunnel.io.gso import GRO_BUFFER_SIZE, GsoSender, enable_gro, gso_supported
from tunnel.io.offload import VNET_HDR_SIZE
from tunnel.protocol.datachannel import DataKey
from tunnel.protocol.prf import DirectionKey
from tunnel.protocol.replay import ReplayWindow
from tunnel.protocol.verdicts import DROPPED, TO_TUN
from tunnel.runtime import make_frame

MSS = 1348  # TCP payload: 1400-byte IP packets with timestamps
BATCH = 32  # packets per device batch (the driver drains up to 128)
_IP_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")
TS_OPTS = bytes([1, 1, 8, 10]) + struct.pack("!II", 1, 2)


def tcp_segments(count: int) -> list[bytes]:
    """`count` consecutive segments of one flow (what a TCP sender puts on the TUN)."""
    out = []
    for i in range(count):
        total = 20 + 32 + MSS
        header = _IP_TCP.pack(0x45, 0, total, i, 0x4000, 64, 6, 0, b"\x0a\x00\x00\x01",
                              b"\x0a\x00\x00\x02", 5000, 5201, 1000 + i * MSS, 1, 0x80, 0x10,
                              500, 0, 0)
        out.append(header + TS_OPTS + bytes([i % 251]) * MSS)
    return out


class BenchDevice:
    """A `PacketDevice` in memory: each batch reads the same segments (copied into the view,
    behind a virtio-net header's room, as a TUN with IFF_VNET_HDR reads them); frames written
    are only counted."""

    name = "bench0"
    offload = True
    read_offset = VNET_HDR_SIZE

    def __init__(self, packets: list[bytes]) -> None:
        self.packets = packets
        self.next = 0
        self.rx_packets = self.tx_packets = self.tx_dropped = 0
        self.frames = 0
        self.bytes = 0

    def fileno(self) -> int:
        return -1

    def rewind(self) -> None:
        self.next = 0

    def read_packet(self, room: memoryview) -> int:
        if self.next >= len(self.packets):
            return 0
        packet = self.packets[self.next]
        self.next += 1
        size = len(packet)
        room[VNET_HDR_SIZE : VNET_HDR_SIZE + size] = packet
        self.rx_packets += 1
        return size

    def waiting(self) -> bool:
        return self.next < len(self.packets)

    def holds(self) -> bool:
        return False

    def write(self, data: memoryview) -> bool:
        self.tx_packets += 1
        return True

    def write_frame(self, frame: memoryview) -> bool:
        self.frames += 1
        self.bytes += len(frame)
        return True

    def close(self) -> None:
        pass


def _fault(where: str, exc: Exception) -> None:
    raise exc


class OneWay:
    """Both ends of one direction, wired as the driver wires them; the endpoints are the bare
    data keys (`encrypt` seals and names the peer, `receive` opens)."""

    def __init__(self) -> None:
        c2s = DirectionKey(os.urandom(32), os.urandom(8))
        s2c = DirectionKey(os.urandom(32), os.urandom(8))
        self.sender = DataKey(key_id=0, cipher="AES-256-GCM", encrypt=c2s, decrypt=s2c,
                              replay=ReplayWindow())
        self.receiver = DataKey(key_id=0, cipher="AES-256-GCM", encrypt=s2c, decrypt=c2s,
                                replay=ReplayWindow(64, 1e9))
        self.pool = BufferPool(make_frame(), 8)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.rx.setblocking(False)
        self.gro = enable_gro(self.rx)
        self.gso = GsoSender(self.tx)
        self.addr = self.rx.getsockname()
        self.link = UdpLink(self.rx, memoryview(bytearray(GRO_BUFFER_SIZE)))
        self.device = BenchDevice(tcp_segments(BATCH))
        self.output = DeviceOutput(self.device)
        coalescer = self.output.coalescer
        assert coalescer is not None
        coalescer.udp = False
        self.coalescer = coalescer
        self.sink = self.device

    def encrypt(self, buf: Buffer, now: float) -> tuple[str, int]:
        self.sender.seal(buf, 0)
        return self.addr

    def receive(self, buf: Buffer, addr: tuple[str, int], now: float) -> int:
        return TO_TUN if self.receiver.open(buf, now) else DROPPED

    @property
    def received(self) -> int:
        return self.output.counts.packets

    def batch(self) -> None:
        """One device batch sent, then one socket batch received (the driver's two callbacks)."""
        pool = self.pool
        buf = pool.acquire()
        headroom = buf.offset
        self.device.rewind()
        outbound_batch(self.device, buf, BATCH, self.encrypt, self.gso.add, 1.0, _fault)
        self.gso.flush()
        buf.reset(headroom)
        while inbound_batch(self.link, buf, BATCH, self.receive, self.output.write, 1.0,
                            _fault)[0]:
            buf.reset(headroom)
        self.output.flush()
        pool.release(buf)

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


def time_path(path: OneWay, batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        path.batch()
    return (time.perf_counter() - start) / (batches * BATCH)


def time_floor(batches: int) -> float:
    aead = AESGCM(os.urandom(32))
    view = memoryview(bytearray(2048))
    aad, plain, sealed = view[:8], view[24 : 24 + 1400], view[24 : 24 + 1416]
    nonce = bytearray(12)
    start = time.perf_counter()
    for _ in range(batches * BATCH):
        aead.encrypt_into(nonce, plain, aad, sealed)
        aead.decrypt_into(nonce, sealed, aad, plain)
    return (time.perf_counter() - start) / (batches * BATCH)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds (CI)")
    args = parser.parse_args()
    reps, batches = (3, 300) if args.quick else (7, 1500)
    path = OneWay()
    try:
        print(f"python {sys.version.split()[0]}, UDP GSO {'on' if path.gso.enabled else 'off'}, "
              f"GRO {'on' if path.gro else 'off'}, {BATCH} packets of 1400 bytes per batch")
        time_path(path, batches // 10)  # warm up
        time_floor(batches // 10)
        ours, floor = [], []
        for _ in range(reps):  # interleaved: machine drift hits both alike
            ours.append(time_path(path, batches))
            floor.append(time_floor(batches))
        sent = path.gso.sent
        if path.received != sent or path.receiver.auth_failures:
            print(f"FAIL: sent {sent}, opened {path.received}, "
                  f"auth failures {path.receiver.auth_failures}")
            return 1
        o, f = statistics.median(ours) * 1e6, statistics.median(floor) * 1e6
        print(f"  seal+GSO+GRO+open+coalesce {o:6.2f} us/packet  (min {min(ours) * 1e6:.2f})")
        print(f"  bare AEAD encrypt+decrypt  {f:6.2f} us/packet  (min {min(floor) * 1e6:.2f})")
        print(f"  ratio                      {o / f:6.2f}x  (informational, never fails)")
        print(f"  syscalls per packet        {(path.gso.runs + path.sink.frames) / sent:6.3f}  "
              f"({sent / max(path.gso.runs, 1):.1f} datagrams per sendmsg, "
              f"{path.coalescer.packets / max(path.sink.frames, 1):.1f} packets per TUN frame)")
        return check_memory(path, batches)
    finally:
        path.close()


def check_memory(path: OneWay, batches: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        path.batch()  # first traced use settles caches
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(batches):
            path.batch()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    packets = batches * BATCH
    retained = (after - before) / packets
    peak_growth = peak - before
    stats = path.pool.stats
    # Anything kept per packet is at least a 16-byte object: 0.1 bytes/packet is "nothing".
    ok = retained < 0.1 and peak_growth < 4096 and stats.in_use == 0 and not stats.exhaustions
    print(f"allocations over {packets} packets (tracemalloc): retained {retained:.4f} "
          f"bytes/packet, peak growth {peak_growth} bytes (a per-packet copy would be ~1400 "
          f"per packet alive at once); pool in_use={stats.in_use} "
          f"exhaustions={stats.exhaustions}")
    print("RESULT: " + ("PASS (no per-packet allocation, pool clean)" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    if not gso_supported(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)):
        print("note: no UDP GSO in this kernel; measuring the per-datagram fallback")
    sys.exit(main())
