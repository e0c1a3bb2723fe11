"""The steering programs of a multi-worker server, run by the real kernel in a namespace.

- reuseport: a P_DATA_V2 datagram goes to socket peer_id % N, a control datagram to socket
  (first word of the session id) % N, whatever its source port;
- TUN: a packet into the multi-queue device is read from the queue its destination's map
  entry names (longest prefix wins; no entry: queue 0), IPv4 and IPv6.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time

import pytest

from tests.netns import NetnsPair
from tunnel.io.steering import (
    SessionSteering,
    TunSteering,
    attach_reuseport_steering,
    reuseport_program,
)
from tunnel.io.tun import TunDevice

N = 3


def test_program_shape() -> None:
    program = reuseport_program(N)
    assert program[-1] == (0x16, 0, 0, 0)  # ret A
    assert sum(1 for insn in program if insn[0] == 0x94 and insn[3] == N) == 2  # mod N twice
    with pytest.raises(ValueError):
        reuseport_program(0)


def _drain(sock: socket.socket) -> list[bytes]:
    sock.setblocking(False)
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


def _reuseport_group(pair: NetnsPair) -> list[socket.socket]:
    """N UDP sockets of one SO_REUSEPORT group on address A (call inside its namespace)."""
    socks: list[socket.socket] = []
    for _ in range(N):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((str(pair.addr_a), 0 if not socks else socks[0].getsockname()[1]))
        socks.append(sock)
    return socks


def test_reuseport_steers_by_peer_id_and_session_id(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    with pair.entered(pair.ns_a):
        socks = _reuseport_group(pair)
        attach_reuseport_steering(socks[1], N)  # any member: the program is the group's
    port = socks[0].getsockname()[1]
    expected: dict[int, list[bytes]] = {i: [] for i in range(N)}
    with pair.entered(pair.ns_b):
        for round_ in range(4):  # a new source port each round: the worker must not change
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for peer_id in (0, 1, 2, 5, 0xFFFFFF, 1000):
                data = bytes([9 << 3 | 1]) + peer_id.to_bytes(3, "big") + bytes([round_]) * 20
                sender.sendto(data, (str(pair.addr_a), port))
                expected[peer_id % N].append(data)
            for word in (7, 8, 0xDEADBEEF):
                data = bytes([7 << 3]) + word.to_bytes(4, "big") + b"\0" * 4 + bytes([round_])
                sender.sendto(data, (str(pair.addr_a), port))
                expected[word % N].append(data)
            sender.close()
    time.sleep(0.2)
    for index, sock in enumerate(socks):
        assert sorted(_drain(sock)) == sorted(expected[index]), index
        sock.close()


def test_session_steering_balances_new_sessions(netns_pair: NetnsPair) -> None:
    """New sessions go to the workers in turn (not by their random session id), every later
    packet of a session (another source port, another opcode) follows its first, a pinned
    session goes where it was pinned, data by peer-id."""
    pair = netns_pair
    steering = SessionSteering.create(N)
    try:
        with pair.entered(pair.ns_a):
            socks = _reuseport_group(pair)
            steering.attach(socks[2])
        port = socks[0].getsockname()[1]
        # Session ids that all hash to worker 0 under the classic program (first word % N).
        sids = [(N * k).to_bytes(4, "big") + bytes([k]) * 4 for k in range(1, 2 * N + 1)]
        steering.pin(b"pinned!!", 2)
        with pair.entered(pair.ns_b):
            first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for sid in sids:
                first.sendto(bytes([7 << 3]) + sid + b"reset", (str(pair.addr_a), port))
            time.sleep(0.1)
            seen = {i: [d[1:9] for d in _drain(sock)] for i, sock in enumerate(socks)}
            assert sorted(len(v) for v in seen.values()) == [2] * N, seen
            later = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # NAT rebinding
            for sid in sids:
                later.sendto(bytes([4 << 3]) + sid + b"control", (str(pair.addr_a), port))
                later.sendto(bytes([7 << 3]) + sid + b"resent", (str(pair.addr_a), port))
            later.sendto(bytes([4 << 3]) + b"pinned!!" + b"x", (str(pair.addr_a), port))
            later.sendto(bytes([9 << 3]) + (4).to_bytes(3, "big") + b"data", (str(pair.addr_a),
                                                                             port))
            first.close()
            later.close()
        time.sleep(0.1)
        for index, sock in enumerate(socks):
            got = _drain(sock)
            want = sorted([bytes([4 << 3]) + sid + b"control" for sid in seen[index]]
                          + [bytes([7 << 3]) + sid + b"resent" for sid in seen[index]])
            if index == 2:
                want.append(bytes([4 << 3]) + b"pinned!!" + b"x")
            if index == 4 % N:
                want.append(bytes([9 << 3]) + (4).to_bytes(3, "big") + b"data")
            assert sorted(got) == sorted(want), index
            sock.close()
    finally:
        steering.close()


def _read_all(queue: TunDevice) -> list[bytes]:
    out = []
    buf = bytearray(4096)
    while True:
        try:
            n = os.readv(queue.fileno(), [buf])
        except BlockingIOError:
            return out
        out.append(bytes(buf[10 if queue.vnet_hdr else 0:n]))


def _destination(packet: bytes) -> str:
    if packet[0] >> 4 == 4:
        return str(ipaddress.ip_address(packet[16:20]))
    return str(ipaddress.ip_address(packet[24:40]))


def test_tun_queues_steered_by_destination(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    name = pair.ifname("q")
    steering = TunSteering.create()
    try:
        with pair.entered(pair.ns_a):
            queues = [TunDevice.open(name, multi_queue=True) for _ in range(N)]
        steering.attach(queues[0].fileno())
        for cmd in (["ip", "addr", "add", "10.77.0.1/24", "dev", name],
                    ["ip", "-6", "addr", "add", "fd77::1/64", "dev", name, "nodad"],
                    ["ip", "link", "set", name, "up"],
                    ["ip", "route", "add", "10.78.0.0/16", "dev", name]):
            pair.run(pair.ns_a, *cmd, check=True)
        routes = {"10.77.0.2/32": 1, "10.77.0.3/32": 2, "10.78.0.0/16": 1,
                  "10.78.5.0/24": 2, "fd77::5/128": 2, "fd77::6/128": 1}
        for net, worker in routes.items():
            steering.set(ipaddress.ip_network(net), worker)
        steering.set(ipaddress.ip_network("10.77.0.9/32"), 1)
        steering.remove(ipaddress.ip_network("10.77.0.9/32"))  # gone again: queue 0
        steering.remove(ipaddress.ip_network("10.77.0.10/32"))  # never there: no error
        expected = {"10.77.0.2": 1, "10.77.0.3": 2, "10.78.9.9": 1, "10.78.5.7": 2,
                    "fd77::5": 2, "fd77::6": 1, "10.77.0.9": 0, "10.77.0.4": 0}
        with pair.entered(pair.ns_a):
            for dst in expected:
                family = socket.AF_INET6 if ":" in dst else socket.AF_INET
                with socket.socket(family, socket.SOCK_DGRAM) as sock:
                    sock.sendto(b"steer me", (dst, 9))
        time.sleep(0.2)
        seen: dict[str, int] = {}
        for index, queue in enumerate(queues):
            for packet in _read_all(queue):
                if packet[0] >> 4 in (4, 6) and _destination(packet) in expected:
                    seen[_destination(packet)] = index
        assert seen == expected
        for queue in queues:
            queue.close()
    finally:
        steering.close()
