"""Hostile datagrams: empty, truncated, oversized, random, and GSO runs of them.

    python -m tests.io.hostile HOST PORT [SEED]    # send them all to HOST:PORT once
"""

from __future__ import annotations

import random
import socket
import sys

from tunnel.io.gso import GsoSender
from tunnel.protocol.codec import ControlPacket, build_control
from tunnel.protocol.constants import Opcode

_P_DATA_V2 = int(Opcode.P_DATA_V2)


def hostile_datagrams(rng: random.Random, peer_id: int) -> list[bytes]:
    reset = build_control(ControlPacket(
        opcode=Opcode.P_CONTROL_HARD_RESET_CLIENT_V2, key_id=0, session_id=rng.randbytes(8),
        acks=(), remote_session_id=None, packet_id=0,
    ))
    out: list[bytes] = [b"", b"", b""]
    out += [reset[:n] for n in range(len(reset))]  # every truncation of a real reset
    out += [bytes([b]) for b in range(256)]  # every opcode/key_id byte alone
    out += [bytes([b]) + rng.randbytes(rng.randrange(1, 64)) for b in range(256)]
    # Data packets for the live client's peer-id and for ones nobody has: auth failures.
    for pid in (peer_id, 0xFFFFFF, 1):
        head = bytes([(Opcode.P_DATA_V2 << 3) | 0]) + pid.to_bytes(3, "big")
        out += [head, head + rng.randbytes(8), head + rng.randbytes(1400)]
    out += [b"\x00" * 65507, rng.randbytes(65507), rng.randbytes(2000), rng.randbytes(1600)]
    out += [rng.randbytes(rng.randrange(0, 1700)) for _ in range(400)]
    return out


def send_all(
    target: tuple[str, int], datagrams: list[bytes], rng: random.Random,
    family: int = socket.AF_INET,
) -> int:
    """Each datagram on its own, then the same again as GSO runs (GRO runs at the receiver)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sent = 0
    try:
        for data in datagrams:
            sock.sendto(data, target)
            sent += 1
        gso = GsoSender(sock)
        sizes = [1, 2, 9, 100, 1200]
        for _ in range(40):
            size = rng.choice(sizes)
            for _ in range(rng.randrange(2, 20)):
                gso.add(memoryview(rng.randbytes(size)), target)
            gso.add(memoryview(rng.randbytes(rng.randrange(0, size + 1))), target)  # short tail
            gso.flush()
        # Runs of forged data packets (one data header each: a peer-id, a key_id): these pass
        # a receiver's first-byte check and reach its batch open of GRO runs (gro_rows.py),
        # where every row must fail authentication on its own. Only the bare data headers
        # (not every random datagram that happens to start like one): the runs are ~100 KB
        # per header, and a test behind a 1 mbit/s queue sends them on a blocking socket.
        heads = sorted({data for data in datagrams
                        if len(data) == 4 and data[0] >> 3 == _P_DATA_V2})
        for head in heads:
            for _ in range(3):
                size = rng.choice((40, 100, 1200, 1400))
                for _ in range(rng.randrange(2, 70)):
                    gso.add(memoryview(head + rng.randbytes(size)), target)
                gso.add(memoryview(head + rng.randbytes(rng.randrange(0, size))), target)
                gso.flush()
        sent += gso.sent
    finally:
        sock.close()
    return sent


def main(argv: list[str]) -> int:
    host, port = argv[0], int(argv[1])
    rng = random.Random(int(argv[2]) if len(argv) > 2 else 8)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    datagrams = hostile_datagrams(rng, 0)
    print(send_all((host, port), datagrams, rng, family=family))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
