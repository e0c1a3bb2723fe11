"""Traffic generators for tests/e2e/test_workers_steering.py, run in the client namespace
(`python -m tests.e2e.workers_flood MODE ...`); each is bounded in packets and time and
prints one JSON line.

    resets HOST PORT COUNT SECONDS   COUNT HARD_RESET_CLIENT_V2 with fresh random session ids
                                     from 256 source ports, paced over about SECONDS
    stall HOST PORT HOLD SID...      the cookie exchange (reset, answer, P_ACK_V1 echo) for each
                                     session id given (hex), one socket each, then silence for
                                     HOLD seconds: sessions that exist but never complete
                                     (prints how many were answered, and the bytes sent)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from tests.flood import _echo, _reset
from tunnel.protocol.codec import parse_control
from tunnel.protocol.constants import Opcode


def resets(host: str, port: int, count: int, seconds: float) -> int:
    socks = []
    for _ in range(256):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        socks.append(sock)
    sent = 0
    begin = time.monotonic()
    for i in range(count):
        if i % 200 == 0:  # paced: the flood lasts about `seconds`
            late = begin + seconds * i / count - time.monotonic()
            if late > 0:
                time.sleep(late)
        try:
            socks[i & 255].sendto(_reset(os.urandom(8)), (host, port))
            sent += 1
        except OSError:
            time.sleep(0.0005)  # the send buffer is full
        if time.monotonic() - begin > 3 * seconds:
            break
    for sock in socks:
        sock.close()
    return sent


def stall(host: str, port: int, hold: float, sids: list[bytes]) -> int:
    answered = sent = 0  # sent: UDP payload bytes, what the server's link counts read
    socks = []
    for sid in sids:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(1.0)
        sock.connect((host, port))
        socks.append(sock)
        for _attempt in range(5):
            sent += sock.send(_reset(sid))
            try:
                data = sock.recv(2048)
            except TimeoutError:
                continue
            if data and data[0] >> 3 == Opcode.P_CONTROL_HARD_RESET_SERVER_V2:
                sent += sock.send(_echo(sid, parse_control(data).session_id))
                answered += 1
                break
    print(json.dumps({"answered": answered, "sent": sent}), flush=True)
    time.sleep(hold)  # the sockets stay open: no ICMP ends anything early
    for sock in socks:
        sock.close()
    return answered


def main(argv: list[str]) -> int:
    mode, host, port = argv[0], argv[1], int(argv[2])
    if mode == "resets":
        print(json.dumps({"sent": resets(host, port, int(argv[3]), float(argv[4]))}),
              flush=True)
    elif mode == "stall":
        stall(host, port, float(argv[3]), [bytes.fromhex(sid) for sid in argv[4:]])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
