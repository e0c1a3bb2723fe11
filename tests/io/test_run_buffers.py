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


def test_the_batch_paths_rows_are_run_blocks() -> None:
    from tests.io.test_tso_rows import super4
    from tunnel.io.gro_rows import ROWS_RUN_SIZE as GRO_ROWS
    from tunnel.io.gro_rows import RunRows
    from tunnel.io.offload import VNET_HDR_SIZE
    from tunnel.io.tso_rows import ROW_PLAIN_AT, SuperCut
    from tunnel.io.tso_rows import ROWS_RUN_SIZE as TSO_ROWS

    pool = RunPool(max(GRO_ROWS, TSO_ROWS), 2)
    cut = SuperCut(pool.acquire())
    rows = RunRows(pool.acquire())
    assert pool.stats.in_use == 2
    assert rows.max_rows >= 65536 // 1428  # a GRO read of 1400-byte datagrams in one pass
    frame = super4(b"x" * (1448 * 45), 1448)  # the largest super-packet: 45 rows fit
    assert cut.load(memoryview(frame), len(frame) - VNET_HDR_SIZE) and cut.count == 45
    cut.fill()
    block = cut.run.tailroom_view()  # the rows are the block's memory, not a copy
    assert block[ROW_PLAIN_AT] == 0x45 and block[ROW_PLAIN_AT + 9] == 6
    # Without a pool each gets a counted block of its own, of the size it asks for.
    own = SuperCut()
    assert own.run.capacity >= TSO_ROWS and isinstance(own.run._home, RunPool)
    assert RunRows().max_rows == GRO_ROWS // RunRows().rows.shape[1]


def test_rows_in_a_smaller_block_take_what_fits() -> None:
    from tests.io.test_tso_rows import super4
    from tunnel.io.gro_rows import RunRows
    from tunnel.io.offload import VNET_HDR_SIZE
    from tunnel.io.tso_rows import SuperCut

    small = RunPool(20000, 2)
    cut = SuperCut(small.acquire())
    frame = super4(b"x" * 30000, 1448)  # 21 rows of 1552 bytes: more than 20000 bytes
    assert not cut.load(memoryview(frame), len(frame) - VNET_HDR_SIZE)  # the per-segment way
    frame = super4(b"x" * 10000, 1448)  # 7 rows fit
    assert cut.load(memoryview(frame), len(frame) - VNET_HDR_SIZE)
    rows = RunRows(small.acquire())
    assert rows.max_rows == 20000 // rows.rows.shape[1]
    with pytest.raises(ValueError, match="rows block"):
        RunRows(RunPool(1000, 1).acquire())


@pytest.mark.asyncio
async def test_a_driver_counts_the_rows_block_of_its_batch_path() -> None:
    # offload: both ends (Client.open_rows, Server.open_rows) open GRO runs in rows, in a
    # block of the driver's RunPool: GSO send, GRO read, coalescer, rows.
    async with TunnelPair(offload=True) as pair:
        for side in (pair.client, pair.server):
            runs = side.driver.runs
            assert (runs.stats.size, runs.stats.in_use) == (4, 4)
            opener = side.driver._runs
            assert opener is not None and opener.rows.run._home is runs
