"""The real I/O layer under hostile input: nothing that arrives stops the tunnel or leaks.

A live server and client (tests/io/tunnel_pair.py: the real Driver, real UDP sockets on
127.0.0.1, in-memory devices) get empty, truncated, oversized and random datagrams on their
sockets, GRO runs of them, and odd packets on their devices. Afterwards both drivers still
run, the tunnel still carries packets both ways, no exception was raised inside a callback,
and every pooled buffer and arena entry came back. (The protocol-level hypothesis tests never
reached the driver, which is how an empty datagram could stop both ends.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import subprocess

import pytest

from core import Buffer
from tests.io.hostile import hostile_datagrams, send_all
from tests.io.live_pair import make_client
from tests.io.tunnel_pair import SERVER_VIP, TunnelPair, ipv4_udp
from tests.netns import NetnsPair
from tunnel.io.driver import Driver
from tunnel.io.udp import open_udp_socket
from tunnel.protocol.codec import ControlPacket, build_control
from tunnel.protocol.constants import Opcode
from tunnel.runtime import Timers

pytestmark = pytest.mark.asyncio

SEED = int(os.environ.get("FUZZ_SEED", "8"))


async def settle(pair: TunnelPair) -> None:
    """Let both drivers drain their sockets and devices."""
    for _ in range(20):
        await asyncio.sleep(0.05)


def assert_no_leak(pair: TunnelPair) -> None:
    for side in (pair.server, pair.client):
        stats = side.pool.stats
        assert stats.in_use == 0, stats
        assert side.driver.arena.live_entries == 0, side.driver.arena.live_entries


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
async def test_hostile_datagrams_and_packets_stop_nothing_and_leak_nothing(offload: bool) -> None:
    # offload: devices that take virtio-net frames, so the client opens GRO runs in batch
    # (gro_rows.py) and the coalescer runs: the hostile runs reach those paths too.
    rng = random.Random(SEED)
    async with TunnelPair(offload=offload) as pair:
        await pair.exchange()
        server_session = pair.server.endpoint.sessions[0]  # type: ignore[attr-defined]
        datagrams = hostile_datagrams(rng, server_session.peer_id)
        empties = datagrams.count(b"")
        for side in (pair.server, pair.client):  # a nobind client's port takes anything too
            send_all(side.addr, datagrams, rng)
            await settle(pair)
        assert pair.client_vip is not None
        odd_packets = [b"", b"\x45", b"\x60" * 39, b"\x45" + bytes(18), rng.randbytes(70000),
                       ipv4_udp(pair.client_vip, SERVER_VIP, b"")[:20]]
        odd_packets += [rng.randbytes(rng.randrange(0, 1500)) for _ in range(200)]
        for side in (pair.server, pair.client):
            for packet in odd_packets:
                side.device.inject(packet)
        await settle(pair)

        for side in (pair.server, pair.client):
            stats = side.driver.stats
            assert stats.errors == 0, "an exception escaped into a readiness callback"
            assert side.driver.faults.count == 0
            assert stats.malformed >= empties, stats
        assert pair.server.endpoint.sessions == [server_session]  # type: ignore[attr-defined]
        await pair.exchange(50)  # the legitimate peer still gets through, both ways
        await settle(pair)
        assert_no_leak(pair)


class Faulty:
    """A server endpoint with bugs on purpose: it raises on chosen inputs."""

    def __init__(self, server: object) -> None:
        self.inner = server
        self.timer_faults = 1

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def receive(self, buf: Buffer, addr: tuple[str, int], now: float) -> int:
        if bytes(buf.data) == b"BOOM":
            raise RuntimeError("a bug on purpose")
        return self.inner.receive(buf, addr, now)  # type: ignore[attr-defined, no-any-return]

    def encrypt(self, buf: Buffer, now: float) -> tuple[str, int] | None:
        if bytes(buf.data).endswith(b"BOOM"):
            raise KeyError("a bug on purpose")
        return self.inner.encrypt(buf, now)  # type: ignore[attr-defined, no-any-return]

    def handle_timer(self, now: float) -> None:
        if self.timer_faults:
            self.timer_faults -= 1
            raise ValueError("a timer bug on purpose")
        self.inner.handle_timer(now)  # type: ignore[attr-defined]


async def test_an_exception_in_a_callback_is_logged_counted_and_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="tunnel")
    async with TunnelPair(server_wrap=Faulty) as pair:
        driver = pair.server.driver
        faults_before = driver.stats.errors
        for _ in range(20):
            send_all(pair.server.addr, [b"BOOM"], random.Random(1))
        assert pair.client_vip is not None
        for _ in range(20):
            pair.server.device.inject(ipv4_udp(SERVER_VIP, pair.client_vip, b"BOOM"))
        driver._on_timer()  # the timer's bug once
        await settle(pair)
        await pair.exchange(30)
        await settle(pair)
        assert driver.stats.errors - faults_before >= 41
        assert driver.faults.count == driver.stats.errors
        # Rate-limited: a handful of tracebacks, not one per packet.
        logged = [r for r in caplog.records if r.getMessage().startswith("internal error in")]
        assert 1 <= len(logged) <= driver.faults.burst
        assert logged[0].exc_info is not None  # with its traceback
        assert "a bug on purpose" in caplog.text
        assert_no_leak(pair)


def _tbf_loopback(netns_pair: NetnsPair) -> str:
    """A namespace of the test's own whose loopback holds datagrams in a slow token bucket:
    what waits there is charged to the sending socket, so a small SO_SNDBUF fills and the
    kernel answers EAGAIN (on a bare loopback a datagram is handed over within sendto)."""
    ns = netns_pair.ns_a
    subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "tbf",
                    "rate", "1mbit", "burst", "1600", "limit", "300000"], check=True)
    return ns


async def test_hostile_input_while_the_send_buffer_is_full(netns_pair: NetnsPair) -> None:
    """The same hostile input, with both sockets at the kernel's smallest send buffer and a
    flood of valid hard resets whose stateless replies leave in one burst: the kernel refuses
    most with EAGAIN, they wait in the control backlog (bounded, in order) and leave on
    writability. Nothing raises, nothing leaks, the live peer still gets through."""
    rng = random.Random(SEED)
    ns = _tbf_loopback(netns_pair)

    def open_socket() -> socket.socket:
        with netns_pair.entered(ns):
            sock = open_udp_socket("127.0.0.1", 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # raised to the minimum
        return sock

    async with TunnelPair(open_socket=open_socket) as pair:
        server_session = pair.server.endpoint.sessions[0]  # type: ignore[attr-defined]
        datagrams = hostile_datagrams(rng, server_session.peer_id)
        resets = [build_control(ControlPacket(
            opcode=Opcode.P_CONTROL_HARD_RESET_CLIENT_V2, key_id=0, session_id=rng.randbytes(8),
            acks=(), remote_session_id=None, packet_id=0)) for _ in range(40)]
        with netns_pair.entered(ns):
            for side in (pair.server, pair.client):
                send_all(side.addr, datagrams, rng)
            flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for reset in resets:  # one socket read batch: 40 replies in one flush
                flood.sendto(reset, pair.server.addr)
        finally:
            flood.close()
        control = pair.server.driver.control_backlog
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while (control.kept == 0 or control.pending) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert control.kept > 0, "the send buffer never filled: the backlog did not run"
        assert control.pending == 0 and control.sent >= control.kept, vars(control)
        for side in (pair.server, pair.client):
            stats = side.driver.stats
            assert stats.errors == 0, "an exception escaped into a readiness callback"
            assert side.driver.faults.count == 0
        assert pair.server.endpoint.sessions == [server_session]  # type: ignore[attr-defined]
        for _ in range(10):  # one packet each way at a time: a burst would meet EAGAIN too
            await pair.exchange(1)
        await settle(pair)
        assert_no_leak(pair)


async def test_client_to_client_through_a_full_send_buffer_under_hostile_input(
        netns_pair: NetnsPair) -> None:
    """Client-to-client: the server re-seals each packet into a pool buffer of the receiving
    connection's arena. With the server's socket at the smallest send buffer behind a slow
    queue, most meet EAGAIN: each is detached from its arena, kept in order in the pooled
    backlog, sent on writability and only then given back to the pool, while hostile
    datagrams arrive too. Every packet gets there, nothing leaks, nothing raises."""
    rng = random.Random(SEED)
    ns = _tbf_loopback(netns_pair)
    made: list[socket.socket] = []

    def open_socket() -> socket.socket:
        with netns_pair.entered(ns):
            sock = open_udp_socket("127.0.0.1", 0)
        if not made:  # the server's; the clients' keep their default send buffers
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        made.append(sock)
        return sock

    async with TunnelPair(open_socket=open_socket) as pair:
        server = pair.server.endpoint
        server.settings.client_to_client = True  # type: ignore[attr-defined]
        server.settings.duplicate_cn = True  # type: ignore[attr-defined]  # one test cert
        loop = asyncio.get_running_loop()
        first_vip = pair.client_vip
        assert first_vip is not None
        sock = open_socket()
        other = make_client(loop.time(), Timers(ping=10, ping_restart=60), pair.server.addr)
        second = pair.side(other, sock, pair.client.pool.frame,
                           lambda dev, pool, on_event: Driver(loop, other, sock, dev, pool,
                                                              on_event=on_event))
        try:
            second.driver.start()
            await asyncio.wait_for(second.ready.wait(), 30)
            second_vip, pair.client_vip = pair.client_vip, first_vip  # side() noted its own
            assert second_vip is not None and second_vip != first_vip
            count = 40  # within the default send buffer of the sending client
            for i in range(count):
                pair.client.device.inject(ipv4_udp(first_vip, second_vip,
                                                   b"c2c%03d" % i + bytes(1200)))
            with netns_pair.entered(ns):
                send_all(pair.server.addr, hostile_datagrams(rng, 0)[:300], rng)
            pooled = pair.server.driver.backlog
            deadline = loop.time() + 30
            while len(second.arrived) < count and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert pooled.kept > 0, "the send buffer never filled: the backlog did not run"
            assert sorted(second.arrived) == sorted(
                ipv4_udp(first_vip, second_vip, b"c2c%03d" % i + bytes(1200))
                for i in range(count))
            assert pooled.pending == 0 and pooled.dropped == 0, vars(pooled)
            assert pair.server.driver.stats.errors == 0
            assert pair.server.driver.faults.count == 0
        finally:
            second.driver.stop()
            sock.close()
            second.device.close()
        await pair.exchange(1)
        await settle(pair)
        assert_no_leak(pair)
        assert second.pool.stats.in_use == 0
