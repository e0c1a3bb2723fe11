"""The datagram driver ends every callback with the endpoint's `end_iteration`: the arenas of
the connections the callback touched are freed, nothing is left live, and the per-connection
counters move. Real drivers, real UDP sockets on 127.0.0.1, in-memory devices."""

from __future__ import annotations

import asyncio

import pytest

from tests.io.tunnel_pair import SERVER_VIP, TunnelPair, ipv4_udp
from tunnel.protocol.server import Server

pytestmark = pytest.mark.asyncio


async def test_connections_arenas_turn_over_per_callback_and_leak_nothing() -> None:
    async with TunnelPair() as pair:
        server = pair.server.endpoint
        assert isinstance(server, Server)
        assert server.iteration.pool is pair.server.pool  # the driver lent its pool
        assert pair.client_vip is not None
        (session,) = server.sessions
        before = session.memory.iterations
        idle = pair.server.pool.stats.in_use
        for i in range(20):
            pair.client.device.inject(ipv4_udp(pair.client_vip, SERVER_VIP, b"up%02d" % i))
            pair.server.device.inject(ipv4_udp(SERVER_VIP, pair.client_vip, b"dn%02d" % i))
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(pair.server.arrived) < 20 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert len(pair.server.arrived) >= 20
        # Both directions touched the client's connection, in several callbacks.
        assert session.memory.iterations > before
        assert not server.iteration.touched  # every callback ended its iteration
        assert session.memory.arena.live_entries == 0
        assert pair.server.pool.stats.in_use == idle
        assert pair.server.driver.backlog.pending == 0
