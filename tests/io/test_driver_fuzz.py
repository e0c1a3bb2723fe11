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

import pytest

from core import Buffer
from tests.io.hostile import hostile_datagrams, send_all
from tests.io.tunnel_pair import SERVER_VIP, TunnelPair, ipv4_udp

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


async def test_hostile_datagrams_and_packets_stop_nothing_and_leak_nothing() -> None:
    rng = random.Random(SEED)
    async with TunnelPair() as pair:
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
