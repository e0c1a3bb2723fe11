"""Control-path micro benchmark: codec, reliability layer and wraps, per packet.

The control channel is not the data path, but every handshake runs through it (issue 15's
handshake rate), so a change there is measured here before and after. Prints the median of
several samples (and the minimum), in microseconds of this process's CPU time per operation
(`time.process_time`: a machine shared with other work slows the wall clock, less this):

    .venv/bin/python scripts/bench_control.py [--samples 7] [--rounds 200]

* codec: ``build_control`` and ``parse_control`` of a P_CONTROL_V1 (4 ACKs, 1184 TLS bytes),
  a reset and a P_ACK_V1 (the mean of the three), each alone and as a round trip;
* reliability: one message through a sender's ``datagrams_to_send`` and a receiver's
  ``parse_control`` + ``receive`` + ``pop_received``, its ACK back the same way;
* wraps: ``seal`` + ``open`` of that P_CONTROL_V1 with tls-auth (SHA1) and tls-crypt.

Only public APIs that predate the Buffer rewrite are used, so the same script times an older
tree (``PYTHONPATH=<other tree> python scripts/bench_control.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from core import Buffer
from tunnel.protocol.codec import ControlPacket, build_control, parse_control
from tunnel.protocol.constants import Opcode
from tunnel.protocol.reliability import ReliableLayer
from tunnel.protocol.wrap import ControlWrap, TlsAuthWrap, TlsCryptWrap
from tunnel.protocol.wrap.base import control_frame

SID_A = bytes.fromhex("fa99b04cc87dcc2e")
SID_B = bytes.fromhex("391dc630e20be3ab")
PAYLOAD = bytes(range(256)) * 4 + bytes(160)  # 1184: a full certificate-flight packet

PACKETS = [
    ControlPacket(Opcode.P_CONTROL_V1, 0, SID_A, (4, 3, 2, 1), SID_B, 7, PAYLOAD),
    ControlPacket(Opcode.P_CONTROL_HARD_RESET_CLIENT_V2, 0, SID_A, packet_id=0),
    ControlPacket(Opcode.P_ACK_V1, 0, SID_A, (1, 0), SID_B),
]


clock = time.process_time


def bench_codec(rounds: int) -> float:
    start = clock()
    for _ in range(rounds):
        for pkt in PACKETS:
            parse_control(build_control(pkt))
    return (clock() - start) / (rounds * len(PACKETS))


def bench_build(rounds: int) -> float:
    start = clock()
    for _ in range(rounds):
        for pkt in PACKETS:
            build_control(pkt)
    return (clock() - start) / (rounds * len(PACKETS))


def bench_parse(rounds: int) -> float:
    """What a session does with a received datagram in its pooled buffer."""
    bufs = []
    for pkt in PACKETS:
        wire = build_control(pkt)
        buf = Buffer(64 + len(wire))
        buf.reset(64)
        buf.append(wire)
        bufs.append((buf, len(wire)))
    try:
        from tunnel.protocol.codec import read_control  # type: ignore[attr-defined]
    except ImportError:  # a tree from before the Buffer codec: it parsed the buffer's view
        def read_control(buf: Buffer) -> ControlPacket:
            return parse_control(buf.data)
    start = clock()
    for _ in range(rounds):
        for buf, size in bufs:
            buf.reset(64)
            buf.inc_len(size)
            read_control(buf)
    return (clock() - start) / (rounds * len(PACKETS))


def bench_reliability(rounds: int) -> float:
    sender = ReliableLayer(key_id=0, local_sid=SID_A)
    receiver = ReliableLayer(key_id=0, local_sid=SID_B)
    sender.remote_sid, receiver.remote_sid = SID_B, SID_A
    now = 0.0
    start = clock()
    for _ in range(rounds):
        sender.queue(Opcode.P_CONTROL_V1, PAYLOAD)
        for datagram in sender.datagrams_to_send(now):
            receiver.receive(parse_control(datagram), now)
        receiver.pop_received()
        for datagram in receiver.datagrams_to_send(now):
            sender.receive(parse_control(datagram), now)
        now += 0.001
    elapsed = clock() - start
    assert sender.all_acked and receiver.next_expected_pid == rounds
    return elapsed / rounds


def bench_wrap(make: Callable[[], tuple[ControlWrap, ControlWrap]], rounds: int) -> float:
    sealer, opener = make()
    datagram = build_control(PACKETS[0])
    frame = control_frame(sealer)
    buf = Buffer(frame.buffer_size)
    start = clock()
    for i in range(rounds):
        buf.reset(frame.headroom)
        buf.append(datagram)
        sealer.seal(buf, i + 1, 1_700_000_000)
        if opener.open(buf) is None:
            raise SystemExit("wrap round trip failed")
    return (clock() - start) / rounds


def _tls_auth() -> tuple[ControlWrap, ControlWrap]:
    key = os.urandom(256)
    return TlsAuthWrap(key, 0), TlsAuthWrap(key, 1)


def _tls_crypt() -> tuple[ControlWrap, ControlWrap]:
    key = os.urandom(256)
    return TlsCryptWrap.from_key(key, server=False), TlsCryptWrap.from_key(key, server=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("-k", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    cases: dict[str, Callable[[], float]] = {
        "codec build": lambda: bench_build(args.rounds),
        "codec parse": lambda: bench_parse(args.rounds),
        "codec build+parse": lambda: bench_codec(args.rounds),
        "reliability msg+ack": lambda: bench_reliability(args.rounds),
        "tls-auth seal+open": lambda: bench_wrap(_tls_auth, args.rounds),
        "tls-crypt seal+open": lambda: bench_wrap(_tls_crypt, args.rounds),
    }
    for name, run in cases.items():
        if args.k not in name:
            continue
        run()  # warm up
        samples = sorted(run() * 1e6 for _ in range(args.samples))
        print(f"{name:22s} median {statistics.median(samples):7.2f} us"
              f"  (min {samples[0]:.2f}, max {samples[-1]:.2f}, {args.samples} x {args.rounds})")


if __name__ == "__main__":
    main()
