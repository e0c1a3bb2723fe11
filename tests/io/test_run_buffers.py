"""The io layer's run buffers are RunPool blocks, acquired once and counted."""

from __future__ import annotations

import asyncio
import socket

import pytest

from core import PoolExhausted, RunPool
from tests.io.tunnel_pair import SERVER_VIP, TunnelPair, ipv4_udp
from tunnel.io.gso import GSO_MAX_BYTES, GsoSender
from tunnel.io.offload import COALESCE_RUN_SIZE, TunCoalescer


def test_gso_sender_and_coalescer_build_runs_in_pool_blocks() -> None:
    pool = RunPool(COALESCE_RUN_SIZE, 2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sender = GsoSender(sock, run=pool.acquire())
        coalescer = TunCoalescer(lambda frame: True, udp=False, run=pool.acquire())
        assert pool.stats.in_use == 2
        assert sender.run.capacity >= GSO_MAX_BYTES
        assert coalescer.run.capacity >= COALESCE_RUN_SIZE
        with pytest.raises(PoolExhausted):  # a third owner: bounded, not grown
            GsoSender(sock, run=pool.acquire())


def test_a_run_too_small_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(
        ValueError, match="GSO run"
    ):
        GsoSender(sock, run=RunPool(1024, 1).acquire())
    with pytest.raises(ValueError, match="coalescing run"):
        TunCoalescer(lambda frame: True, run=RunPool(1024, 1).acquire())


def test_without_a_pool_each_owner_gets_a_counted_run_of_its_own() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sender = GsoSender(sock)
    home = sender.run._home
    assert isinstance(home, RunPool) and home.stats.in_use == 1


@pytest.mark.asyncio
async def test_a_driver_holds_its_runs_in_its_run_pool() -> None:
    async with TunnelPair() as pair:
        for side in (pair.server, pair.client):
            runs = side.driver.runs
            # GSO send + GRO read (a memory device has no virtio header: no coalescer)
            assert (runs.stats.size, runs.stats.in_use) == (2, 2)
            assert runs.block_size >= 65536
        assert pair.client_vip is not None
        before = pair.server.driver.runs.stats
        for i in range(20):
            pair.client.device.inject(ipv4_udp(pair.client_vip, SERVER_VIP, b"run%02d" % i))
        await asyncio.sleep(0.2)
        assert len(pair.server.arrived) >= 1
        after = pair.server.driver.runs.stats
        assert after == before  # the hot path never takes or gives back a run
