#!/usr/bin/env python3
"""Data-channel benchmark: seal + open of each cipher kind against its bare crypto, and allocations.

Both kinds go through the cipher seam (`tunnel.protocol.datacipher.make_data_key`): AEAD
(`DataKey`, default AES-256-GCM) and CBC + HMAC (`CbcHmacKey`, default AES-256-CBC with SHA256),
printed one after the other. The CBC floor is one persistent AES-CBC context per direction
(`update_into`) plus one `hmac.digest` per direction; CBC is slower by nature (two passes over
the data, one of them a hash), which the numbers show side by side.

1. Speed. 1400-byte packets (an MSS-clamped TCP segment's IP packet), sealed and opened in
   place in a pooled buffer through `DataKey`, against the floor: `encrypt_into` + `decrypt_into`
   of the same AEAD on the same bytes with every view prepared in advance. Printed as
   microseconds per packet (seal + open) and their ratio; the goal is within 2x of the floor.
   The machine is shared and noisy, so each side runs several interleaved repetitions and the
   medians are compared.
2. Memory. The full per-packet path - acquire from the pool, fill, seal, open, release - under
   tracemalloc after a warm-up: traced memory after minus before, per packet, must be zero and
   the peak must grow by far less than one packet (no per-packet `bytes`), and the pool must end
   with zero exhaustions and nothing in use.

Exit status 1 if the memory check fails, so it can serve as a check (`--quick` for a few seconds).
Run from the repository root: `python3 scripts/bench_datapath.py [--quick]`.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

try:
    import core  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # run from a checkout without installing: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from core import Buffer, BufferPool, Frame, FrameBuilder
from tunnel.protocol.cbc import CBC_CIPHERS, HMAC_DIGESTS
from tunnel.protocol.datachannel import AEAD_TAG_SIZE, DATA_V2_OVERHEAD, SUPPORTED_CIPHERS
from tunnel.protocol.datacipher import DataCipherKey, make_data_key, register_data_ciphers
from tunnel.protocol.replay import ReplayWindow

CBC_AUTH = "SHA256"

PACKET_SIZE = 1400
SMALL_PACKET_SIZE = 300  # > 256: its lengths are heap ints too, as at PACKET_SIZE
PEER_ID = 0
POOL_BLOCKS = 64
WARMUP_PACKETS = 10_000
RETAINED_LIMIT = 0.01
"""Bytes per packet still allocated after the run. Anything kept per packet is at least a
16-byte object, so this is zero up to a few constant bytes (a counter int changing size)."""


def make_frame() -> Frame:
    builder = FrameBuilder(tun_mtu=1500)
    register_data_ciphers(builder, [*SUPPORTED_CIPHERS, *CBC_CIPHERS], "SHA512")
    return builder.finalize()


def make_pair(cipher: str) -> tuple[DataCipherKey, DataCipherKey]:
    """Two peers' keys for one key_id: what `sender` (client) seals, `receiver` opens."""
    key2 = os.urandom(256)
    # The replay window is sized so that nothing in the run is refused by time.
    sender, receiver = (
        make_data_key(cipher=cipher, auth=CBC_AUTH, key2=key2, is_server=server, key_id=0,
                      replay=ReplayWindow())
        for server in (False, True)
    )
    return sender, receiver


def time_datakey(
    sender: DataCipherKey, receiver: DataCipherKey, buf: Buffer, packets: int
) -> float:
    """Seconds per packet for seal + open; the buffer ends where it started (open undoes seal)."""
    seal = sender.seal
    open_ = receiver.open
    start = time.perf_counter()
    for _ in range(packets):
        seal(buf, PEER_ID)
        open_(buf, 0.0)
    return (time.perf_counter() - start) / packets


def time_floor_cbc(cipher: str, buf: Buffer, payload: bytes, packets: int) -> float:
    """Seconds per packet for bare CBC update_into + HMAC, both directions, views prepared."""
    key = os.urandom(CBC_CIPHERS[cipher])
    mac_key = os.urandom(HMAC_DIGESTS[CBC_AUTH])
    digest = CBC_AUTH.lower()
    enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor().update_into
    dec = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor().update_into
    view = buf.tailroom_view()
    size = -(-(PACKET_SIZE + 4 + 1) // 16) * 16 + 16  # IV block + packet-id + payload + pad
    data = view[:size]
    out = view[: size + 15]
    data[16 : 16 + PACKET_SIZE] = payload
    start = time.perf_counter()
    for _ in range(packets):
        enc(data, out)
        hmac.digest(mac_key, data, digest)
        hmac.digest(mac_key, data, digest)
        dec(data, out)
    return (time.perf_counter() - start) / packets


def time_floor(cipher: str, buf: Buffer, payload: bytes, packets: int) -> float:
    """Seconds per packet for bare encrypt_into + decrypt_into, every view prepared in advance."""
    if cipher in CBC_CIPHERS:
        return time_floor_cbc(cipher, buf, payload, packets)
    aead_class, key_len = SUPPORTED_CIPHERS[cipher]
    aead: AESGCM | ChaCha20Poly1305 = aead_class(os.urandom(key_len))
    encrypt_into = aead.encrypt_into
    decrypt_into = aead.decrypt_into
    aad_len = DATA_V2_OVERHEAD - AEAD_TAG_SIZE  # P_DATA_V2 header + packet-id
    view = buf.tailroom_view()
    aad = view[:aad_len]
    plain = view[aad_len : aad_len + PACKET_SIZE]
    sealed = view[aad_len : aad_len + PACKET_SIZE + AEAD_TAG_SIZE]
    plain[:] = payload
    nonce = bytearray(os.urandom(12))
    start = time.perf_counter()
    for _ in range(packets):
        encrypt_into(nonce, plain, aad, sealed)
        decrypt_into(nonce, sealed, aad, plain)
    return (time.perf_counter() - start) / packets


def bench_speed(cipher: str, pool: BufferPool, packets: int, reps: int) -> float:
    """Prints the timing; returns our median microseconds per packet (seal + open)."""
    sender, receiver = make_pair(cipher)
    payload = os.urandom(PACKET_SIZE)
    buf = pool.acquire()
    floor_buf = pool.acquire()
    try:
        buf.append(payload)
        time_datakey(sender, receiver, buf, max(packets // 10, 1000))  # warm up
        time_floor(cipher, floor_buf, payload, max(packets // 10, 1000))
        ours: list[float] = []
        floor: list[float] = []
        for _ in range(reps):  # interleaved, so drifting machine load hits both alike
            ours.append(time_datakey(sender, receiver, buf, packets))
            floor.append(time_floor(cipher, floor_buf, payload, packets))
        if not buf.equals(payload) or receiver.opened != sender.sealed:
            raise SystemExit("FAIL: the round trip did not give back the payload")
    finally:
        pool.release(buf)
        pool.release(floor_buf)
    ours_us = statistics.median(ours) * 1e6
    floor_us = statistics.median(floor) * 1e6
    ratio = ours_us / floor_us
    name = f"{cipher}/HMAC-{CBC_AUTH}" if cipher in CBC_CIPHERS else cipher
    print(f"{name}: {reps} repetitions x {packets} packets of {PACKET_SIZE} bytes, medians")
    print(f"  seal+open (seam)       {ours_us:7.3f} us/packet  "
          f"(min {min(ours) * 1e6:.3f}, max {max(ours) * 1e6:.3f})")
    print(f"  floor (bare crypto)    {floor_us:7.3f} us/packet  "
          f"(min {min(floor) * 1e6:.3f}, max {max(floor) * 1e6:.3f})")
    print(f"  ratio to floor         {ratio:7.2f}x  (goal <= 2.00x)"
          f"{'' if ratio <= 2.0 else '  [above goal]'}")
    print(f"  ratio of the minima    {min(ours) / min(floor):7.2f}x  (the least disturbed runs)")
    print(f"  data-channel overhead  {ours_us - floor_us:7.3f} us/packet")
    return ours_us


def one_packet(
    pool: BufferPool, sender: DataCipherKey, receiver: DataCipherKey, payload: bytes
) -> None:
    """The whole life of one packet in memory: pool -> fill -> seal -> open -> pool."""
    buf = pool.acquire()
    buf.append(payload)
    sender.seal(buf, PEER_ID)
    if not receiver.open(buf, 1.0):
        raise SystemExit("FAIL: a packet did not open")
    pool.release(buf)


def traced_growth(pool: BufferPool, cipher: str, size: int, packets: int) -> tuple[int, int]:
    """(bytes still allocated after `packets` packets, peak growth during them), tracemalloc."""
    sender, receiver = make_pair(cipher)
    payload = os.urandom(size)
    tracemalloc.start()
    try:
        # Warm up: specialised bytecode, free lists, counters past the small-int cache.
        for _ in range(WARMUP_PACKETS):
            one_packet(pool, sender, receiver, payload)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(packets):
            one_packet(pool, sender, receiver, payload)
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before, peak - before


def bench_allocations(cipher: str, pool: BufferPool, packets: int) -> bool:
    idle = pool.stats.in_use
    retained, peak = traced_growth(pool, cipher, PACKET_SIZE, packets)
    # The same run with tiny packets: whatever the peak holds that scales with the packet
    # (a bytes copy, a temporary buffer) shows up as a difference; the memoryview and int
    # headers that the hot path cannot avoid are the same size for both.
    _, small_peak = traced_growth(pool, cipher, SMALL_PACKET_SIZE, packets)
    stats = pool.stats
    per_packet = retained / packets
    retained_ok = per_packet < RETAINED_LIMIT
    scaling = peak - small_peak
    peak_ok = peak < PACKET_SIZE and scaling < (PACKET_SIZE - SMALL_PACKET_SIZE) // 2
    pool_ok = stats.exhaustions == 0 and stats.in_use == idle
    print(f"{cipher}: allocations over {packets} packets after {WARMUP_PACKETS} warm-up "
          f"(tracemalloc; acquire, fill, seal, open, release)")
    print(f"  retained bytes/packet  {per_packet:9.4f}  ({retained:+d} bytes in total)"
          f"{'' if retained_ok else '  [FAIL]'}")
    print(f"  peak growth            {peak:6d} bytes at {PACKET_SIZE}-byte packets, "
          f"{small_peak} at {SMALL_PACKET_SIZE}-byte: {scaling:+d} scales with the packet"
          f"{'' if peak_ok else '  [FAIL]'}")
    print("                         (the peak is a few memoryview headers alive at once; a "
          "per-packet copy would add ~the packet size)")
    print(f"  pool                   size={stats.size} in_use={stats.in_use} (idle {idle}) "
          f"high_water={stats.high_water} exhaustions={stats.exhaustions}"
          f"{'' if pool_ok else '  [FAIL]'}")
    return retained_ok and peak_ok and pool_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second run")
    parser.add_argument("--cipher", choices=sorted([*SUPPORTED_CIPHERS, *CBC_CIPHERS]),
                        action="append",
                        help="cipher(s) to time (default: AES-256-GCM and AES-256-CBC)")
    parser.add_argument("--packets", type=int, help="packets per timed repetition")
    parser.add_argument("--reps", type=int, help="timed repetitions per side")
    args = parser.parse_args(argv)
    packets = args.packets or (20_000 if args.quick else 200_000)
    reps = args.reps or (3 if args.quick else 9)
    alloc_packets = 20_000 if args.quick else 100_000
    ciphers = args.cipher or ["AES-256-GCM", "AES-256-CBC"]

    frame = make_frame()
    pool = BufferPool(frame, POOL_BLOCKS)
    print(f"frame: {frame.describe().splitlines()[0]}")
    print(f"python {sys.version.split()[0]}, pool of {POOL_BLOCKS} x {frame.buffer_size} bytes")
    speeds = {cipher: bench_speed(cipher, pool, packets, reps) for cipher in ciphers}
    aead = [c for c in speeds if c in SUPPORTED_CIPHERS]
    for cipher in (c for c in speeds if c in CBC_CIPHERS and aead):
        base = aead[0]
        print(f"CBC vs AEAD: {cipher}/HMAC-{CBC_AUTH} {speeds[cipher]:.3f} us/packet = "
              f"{speeds[cipher] / speeds[base]:.2f}x {base} {speeds[base]:.3f} us/packet "
              f"({1e6 / speeds[cipher] * PACKET_SIZE * 8 / 1e9:.2f} vs "
              f"{1e6 / speeds[base] * PACKET_SIZE * 8 / 1e9:.2f} Gbit/s of seal+open, one core)")
    ok = all(bench_allocations(cipher, pool, alloc_packets) for cipher in ciphers)
    print("RESULT: " + ("PASS (no per-packet allocation, pool clean)" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
