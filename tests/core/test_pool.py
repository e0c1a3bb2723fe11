"""Tests of core.BufferPool: arming, isolation of blocks, bounds, lifetime errors, counters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import Buffer, BufferPool, Frame, FrameBuilder, PoolError, PoolExhausted
from core.pool import PoolStats, ReleasedBuffer


def small_frame() -> Frame:
    builder = FrameBuilder(tun_mtu=600)
    builder.reserve("hdr", headroom=12, tailroom=16)
    return builder.finalize()


def test_acquire_hands_out_a_buffer_armed_at_the_frame_headroom() -> None:
    frame = small_frame()
    buf = BufferPool(frame, count=2).acquire()
    assert type(buf) is Buffer
    assert (buf.capacity, buf.offset, len(buf)) == (frame.buffer_size, frame.headroom, 0)
    assert frame.headroom == 16  # 12 aligned up to 8


def test_blocks_are_disjoint() -> None:
    pool = BufferPool(small_frame(), count=3)
    bufs = [pool.acquire() for _ in range(3)]
    for index, buf in enumerate(bufs):
        buf.reset(0)
        buf.append(bytes([index + 1]) * buf.capacity)  # fill the whole block
    for index, buf in enumerate(bufs):
        assert bytes(buf.data) == bytes([index + 1]) * buf.capacity


def test_pool_is_bounded_and_counts_exhaustion() -> None:
    pool = BufferPool(small_frame(), count=2)
    first = pool.acquire()
    pool.acquire()
    with pytest.raises(PoolExhausted):
        pool.acquire()
    with pytest.raises(PoolExhausted):
        pool.acquire()
    assert pool.stats.exhaustions == 2
    assert pool.available == 0
    pool.release(first)
    assert pool.acquire() is first  # LIFO: the warmest block, and the same object (no allocation)


def test_pool_exhausted_is_a_pool_error() -> None:
    assert issubclass(PoolExhausted, PoolError)


def test_reacquired_buffer_is_rearmed() -> None:
    pool = BufferPool(small_frame(), count=1)
    buf = pool.acquire()
    buf.reset(0)
    buf.append(b"stale packet")
    pool.release(buf)
    again = pool.acquire()
    assert (again.offset, len(again)) == (pool.frame.headroom, 0)


def test_double_release_raises_and_changes_no_counter() -> None:
    pool = BufferPool(small_frame(), count=2)
    buf = pool.acquire()
    pool.release(buf)
    before = pool.stats
    with pytest.raises(PoolError, match="double release"):
        pool.release(buf)
    assert pool.stats == before
    assert pool.available == 2  # the free list did not get the buffer twice


def test_release_of_foreign_buffers_raises() -> None:
    pool = BufferPool(small_frame(), count=2)
    other_pool = BufferPool(small_frame(), count=1)
    mine = pool.acquire()
    foreign = [other_pool.acquire(), Buffer(64), mine.sub(8)]
    for buf in foreign:
        with pytest.raises(PoolError, match="another pool"):
            pool.release(buf)
    with pytest.raises(PoolError, match="not a pool buffer"):
        pool.release(b"bytes")  # type: ignore[arg-type]
    assert pool.stats.releases == 0
    assert other_pool.stats.in_use == 1


def test_buffers_never_acquired_are_released_buffers() -> None:
    pool = BufferPool(small_frame(), count=1)
    with pytest.raises(PoolError, match="double release"):
        pool.release(pool._free[0])  # reaching in: no public way to get an idle buffer


def public_members() -> list[str]:
    return [name for name in vars(Buffer) if not name.startswith("_") and name != "over"]


@pytest.mark.parametrize("name", public_members())
def test_every_access_to_a_released_buffer_raises(name: str) -> None:
    pool = BufferPool(small_frame(), count=1)
    buf = pool.acquire()
    pool.release(buf)
    with pytest.raises(PoolError, match="released"):
        member = getattr(buf, name)  # a property raises here
        member(1)  # a method raises here, whatever its arguments


def test_len_and_repr_of_a_released_buffer() -> None:
    pool = BufferPool(small_frame(), count=1)
    buf = pool.acquire()
    pool.release(buf)
    assert isinstance(buf, ReleasedBuffer)
    with pytest.raises(PoolError):
        len(buf)
    assert "ReleasedBuffer" in repr(buf)  # debuggers and pytest can still show it


def test_reacquire_revives_the_buffer() -> None:
    pool = BufferPool(small_frame(), count=1)
    buf = pool.acquire()
    pool.release(buf)
    assert pool.acquire() is buf
    buf.append(b"ok")
    assert bytes(buf.data) == b"ok"


def test_count_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BufferPool(small_frame(), count=0)


def test_stats_snapshot() -> None:
    pool = BufferPool(small_frame(), count=3)
    a, b = pool.acquire(), pool.acquire()
    pool.release(a)
    c = pool.acquire()
    pool.release(b)
    pool.release(c)
    assert pool.stats == PoolStats(
        size=3, in_use=0, high_water=2, acquires=3, releases=3, exhaustions=0
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 7)), max_size=60))
def test_random_acquire_release_keeps_counters_exact(ops: list[tuple[bool, int]]) -> None:
    size = 4
    pool = BufferPool(small_frame(), count=size)
    held: list[Buffer] = []
    acquires = releases = exhaustions = high_water = 0
    for acquire, pick in ops:
        if acquire:
            if len(held) == size:
                with pytest.raises(PoolExhausted):
                    pool.acquire()
                exhaustions += 1
            else:
                buf = pool.acquire()
                assert all(buf is not other for other in held)
                held.append(buf)
                acquires += 1
        elif held:
            pool.release(held.pop(pick % len(held)))
            releases += 1
        high_water = max(high_water, len(held))
        assert pool.stats == PoolStats(size, len(held), high_water, acquires, releases, exhaustions)
    for buf in held:  # no leak: everything returns
        pool.release(buf)
    assert pool.stats.in_use == 0
    assert pool.available == size
