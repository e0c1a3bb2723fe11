"""Python client and server over real UDP sockets on 127.0.0.1 (the demo's wiring)."""

from __future__ import annotations

import pytest

from tunnel.demo import run_demo

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("cipher", ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"])
async def test_packets_cross_both_ways_for_each_cipher(cipher: str) -> None:
    result = await run_demo(packets=3000, size=1400, cipher=cipher, progress=False)
    assert result.cipher == cipher
    assert result.delivered == result.packets == 6000
    assert result.corrupt == 0
    assert result.auth_failures == 0 and result.replays == 0
    for pool in result.pools.values():
        stats = pool.stats
        assert stats.in_use == 0, stats  # every buffer came back: no leak
        assert stats.exhaustions == 0
    for driver in result.drivers.values():
        assert driver.arena.iterations > 0


async def test_small_and_full_size_packets() -> None:
    for size in (28, 1500):
        result = await run_demo(packets=500, size=size, progress=False)
        assert result.ok, (size, result.delivered, result.corrupt)


async def test_renegotiation_in_the_middle_of_a_stream_loses_nothing() -> None:
    # reneg-sec 0.25 with a stream that lasts about a second: soft resets happen
    # while packets flow, and every packet still arrives intact.
    result = await run_demo(packets=60_000, size=1000, progress=False, reneg_sec=0.25)
    assert result.renegotiations >= 1, result.renegotiations
    assert result.delivered == result.packets
    assert result.corrupt == 0 and result.auth_failures == 0 and result.replays == 0
