"""A bounded flood of control packets with the wrong tls-auth/tls-crypt key, for
test_wrap_flood.py: resets and cookie echoes (what would create a session if they verified)
from many source ports, at most COUNT datagrams and SECONDS seconds, then it exits.

    python -m tests.e2e.wrap_flood HOST PORT COUNT SECONDS tls-auth|tls-crypt
"""

from __future__ import annotations

import os
import socket
import sys
import time

from core import Buffer
from tunnel.protocol.constants import Opcode
from tunnel.protocol.wrap import ControlWrap, TlsAuthWrap, TlsCryptWrap

SOCKETS = 64
TEMPLATES = 256


def datagrams(wrap: ControlWrap) -> list[bytes]:
    channel = wrap.channel()
    buf = Buffer(2048)
    out = []
    for i in range(TEMPLATES):
        buf.reset(128)
        if i % 2:
            buf.append(bytes([Opcode.P_CONTROL_HARD_RESET_CLIENT_V2 << 3]) + os.urandom(8)
                       + b"\x00" + bytes(4))
        else:
            buf.append(bytes([Opcode.P_CONTROL_V1 << 3]) + os.urandom(8) + b"\x01" + bytes(4)
                       + os.urandom(8) + (1).to_bytes(4, "big") + b"\x16\x03\x01" + bytes(200))
        channel.seal(buf, time.monotonic())
        out.append(bytes(buf.data))
    return out


def main() -> int:
    host, port, count, seconds, kind = sys.argv[1:6]
    wrong_key = os.urandom(256)
    wrap: ControlWrap = (TlsAuthWrap(wrong_key, 1) if kind == "tls-auth"
                         else TlsCryptWrap.from_key(wrong_key, server=False))
    packets = datagrams(wrap)
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOCKETS)]
    target = (host, int(port))
    deadline = time.monotonic() + float(seconds)
    sent = 0
    while sent < int(count) and time.monotonic() < deadline:
        try:
            sockets[sent % SOCKETS].sendto(packets[sent % TEMPLATES], target)
        except OSError:
            time.sleep(0.001)  # a full socket buffer: back off, stay bounded
            continue
        sent += 1
        if sent % 500 == 0:
            time.sleep(0.005)  # ~50-100k packets/s at most: a flood, not a CPU hog
    print(f"sent {sent} datagrams from {SOCKETS} ports", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
