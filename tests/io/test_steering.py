"""The steering programs of a multi-worker server, run by the real kernel in a namespace.

- reuseport: a P_DATA_V2 datagram goes to socket peer_id % N, a control datagram to the
  socket its session id is pinned to, else to (first word of the session id) % N, whatever
  its source port; no datagram writes the map;
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
from tunnel.io.steering import SessionSteering, TunSteering, hashed_worker
from tunnel.io.tun import TunDevice

N = 3


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
    steering = SessionSteering.create(N)
    steering.attach(socks[1])  # any member: the program is the group's
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
                assert hashed_worker(data[1:9], N) == word % N
            sender.close()
    time.sleep(0.2)
    for index, sock in enumerate(socks):
        assert sorted(_drain(sock)) == sorted(expected[index]), index
        sock.close()
    assert steering.pinned() == []  # nothing the packets carried was written
    steering.close()


def test_pinned_sessions_go_to_their_worker_and_resets_leave_nothing(
        netns_pair: NetnsPair) -> None:
    """A pinned session's control packets go where it was pinned, from any source port and
    whatever their opcode; after unpin they go by hash again. A burst of resets with fresh
    session ids (and other control packets) goes by hash and writes no map entry."""
    pair = netns_pair
    steering = SessionSteering.create(N, max_sessions=4)
    try:
        with pair.entered(pair.ns_a):
            socks = _reuseport_group(pair)
            steering.attach(socks[2])
        port = socks[0].getsockname()[1]
        # Session ids that all hash to worker 0 (first word % N), pinned to 1 and 2.
        sids = [(N * k).to_bytes(4, "big") + bytes([k]) * 4 for k in range(1, 5)]
        pins = {sids[0]: 1, sids[1]: 2, sids[2]: 1}
        for sid, worker in pins.items():
            steering.pin(sid, worker)
        steering.pin(sids[3], 2)
        with pytest.raises(OSError):  # full: a clean error, nothing else changes
            steering.pin(b"fifth!!!", 1)
        steering.unpin(sids[3])  # hashed again
        steering.unpin(b"never!!!")  # not there: no error
        assert sorted(steering.pinned()) == sorted(pins)
        flood = [os.urandom(8) for _ in range(300)]
        with pair.entered(pair.ns_b):
            for round_ in range(3):  # NAT rebinding: a new source port each round
                sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                for sid in sids:
                    for opcode in (7, 4, 5):  # reset, control, ack
                        sender.sendto(bytes([opcode << 3]) + sid + bytes([round_]),
                                      (str(pair.addr_a), port))
                sender.close()
            flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for sid in flood:
                flooder.sendto(bytes([7 << 3]) + sid + b"reset", (str(pair.addr_a), port))
            flooder.close()
        time.sleep(0.2)
        for index, sock in enumerate(socks):
            got = _drain(sock)
            want = sorted(bytes([op << 3]) + sid + bytes([r]) for sid in sids for op in (7, 4, 5)
                          for r in range(3) if pins.get(sid, hashed_worker(sid, N)) == index)
            assert sorted(d for d in got if d[1:9] in sids) == want, index
            flooded = [d[1:9] for d in got if d[1:9] not in sids]
            assert sorted(flooded) == sorted(s for s in flood if hashed_worker(s, N) == index)
            sock.close()
        # The burst of resets wrote nothing: the map holds exactly the three pins.
        assert sorted(steering.pinned()) == sorted(pins)
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
