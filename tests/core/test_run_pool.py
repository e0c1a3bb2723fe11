"""RunPool: the 64 KiB run buffers (GSO/GRO, TUN coalescing) as pool memory with counters."""

from __future__ import annotations

import pytest

from core import BlockPool, BufferPool, FrameBuilder, GcArena, PoolError, PoolExhausted, RunPool
from core.frame import BLOCK_ALIGN


def test_blocks_hold_a_run_and_are_cache_line_aligned() -> None:
    pool = RunPool(65545, 3)
    assert pool.run_size == 65545
    assert pool.block_size % BLOCK_ALIGN == 0 and pool.block_size >= 65545
    assert pool.slab_bytes == 3 * pool.block_size
    run = pool.acquire()
    assert run.offset == 0 and len(run) == 0
    assert len(run.tailroom_view()) == pool.block_size


def test_runs_are_counted_like_packet_buffers() -> None:
    pool = RunPool(1000, 2)
    first, second = pool.acquire(), pool.acquire()
    stats = pool.stats
    assert (stats.size, stats.in_use, stats.high_water, stats.acquires) == (2, 2, 2, 2)
    with pytest.raises(PoolExhausted):
        pool.acquire()
    assert pool.stats.exhaustions == 1
    pool.release(first)
    pool.release(second)
    assert pool.stats.in_use == 0 and pool.stats.releases == 2
    with pytest.raises(PoolError):
        pool.release(first)  # double release


def test_a_run_is_not_a_packet_buffer() -> None:
    builder = FrameBuilder()
    builder.reserve("hdr", headroom=8)
    packets = BufferPool(builder.finalize(), 1)
    runs = RunPool(4096, 1)
    assert isinstance(packets, BlockPool) and isinstance(runs, BlockPool)
    with pytest.raises(PoolError):
        packets.release(runs.acquire())


def test_an_arena_takes_from_a_run_pool() -> None:
    pool = RunPool(4096, 1)
    arena = GcArena()
    run = arena.take(pool)
    run.append(b"x" * 4096)
    arena.free()
    assert pool.stats.in_use == 0
    assert arena.bytes_freed == pool.block_size


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        RunPool(0, 1)
    with pytest.raises(ValueError):
        RunPool(10, 0)
