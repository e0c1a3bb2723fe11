"""The link socket's readiness callback on a wakeup for one datagram (the interactive case).

The callback asks the socket whether more is queued (a zero-timeout poll; before, FIONREAD)
instead of failing a read, so these pin what that must not change: packets sent one at a time
each get through at once, and an empty datagram queued behind a real one (FIONREAD said 0 for
it as for nothing) is still read, counted and dropped without stalling the socket. Real
drivers, real UDP sockets on 127.0.0.1, in-memory devices (tests/io/tunnel_pair.py).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.io.tunnel_pair import SERVER_VIP, TunnelPair, ipv4_udp

pytestmark = pytest.mark.asyncio


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


async def test_packets_one_at_a_time_each_get_through() -> None:
    async with TunnelPair() as pair:
        assert pair.client_vip is not None
        for i in range(30):
            up = ipv4_udp(pair.client_vip, SERVER_VIP, b"one%03d" % i)
            pair.client.device.inject(up)
            await wait_for(lambda up=up: up in pair.server.arrived)
            down = ipv4_udp(SERVER_VIP, pair.client_vip, b"two%03d" % i)
            pair.server.device.inject(down)
            await wait_for(lambda down=down: down in pair.client.arrived)
        for side in (pair.server, pair.client):
            assert side.driver.stats.errors == 0


async def test_an_empty_datagram_behind_a_real_one_is_still_read() -> None:
    async with TunnelPair() as pair:
        await pair.exchange(1)
        stats = pair.server.driver.stats
        malformed = stats.malformed
        # A datagram that is all there is wakes the callback, then an empty one arrives
        # behind it before the callback asks the queue: both are read, in one callback or two.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(5):
                s.sendto(b"\x48junk-that-does-not-authenticate", pair.server.addr)
                s.sendto(b"", pair.server.addr)
        await wait_for(lambda: stats.malformed >= malformed + 5)
        await pair.exchange(5)  # the socket is still served
        assert stats.errors == 0
