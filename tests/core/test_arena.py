"""Tests of core.GcArena: collective free, specials, detach, reuse, counters, failure paths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import Buffer, BufferPool, FrameBuilder, GcArena, PoolError, PoolExhausted


def make_pool(count: int = 8) -> BufferPool:
    builder = FrameBuilder(tun_mtu=1500)
    builder.reserve("hdr", headroom=8)
    return BufferPool(builder.finalize(), count=count)


def test_take_acquires_and_free_releases_everything() -> None:
    pool = make_pool()
    gc = GcArena()
    bufs = [gc.take(pool) for _ in range(5)]
    assert pool.stats.in_use == 5
    assert gc.live_entries == 5
    assert all(buf.offset == pool.frame.headroom for buf in bufs)
    gc.free()
    assert pool.stats.in_use == 0
    assert gc.live_entries == 0
    for buf in bufs:
        with pytest.raises(PoolError, match="released"):
            buf.append(b"x")


def test_free_is_idempotent() -> None:
    pool = make_pool()
    gc = GcArena()
    gc.take(pool)
    gc.free()
    counters = (gc.iterations, gc.entries_freed, gc.bytes_freed)
    gc.free()
    assert (gc.iterations, gc.entries_freed, gc.bytes_freed) == counters
    assert pool.stats.releases == 1


def test_with_frees_at_exit_even_on_error() -> None:
    pool = make_pool()
    arena = GcArena()
    with pytest.raises(RuntimeError, match="handler failed"), arena as gc:
        gc.take(pool)
        gc.take(pool)
        raise RuntimeError("handler failed")
    assert pool.stats.in_use == 0
    assert arena.iterations == 1


def test_one_arena_serves_many_iterations() -> None:
    pool = make_pool(count=4)
    gc = GcArena()
    for iteration in range(1, 51):
        with gc:
            for _ in range(4):
                gc.take(pool)
            assert pool.stats.in_use == 4
        assert pool.stats.in_use == 0
        assert gc.iterations == iteration
    assert gc.entries_freed == 200
    assert gc.bytes_freed == 200 * pool.frame.buffer_size


def test_specials_run_after_the_buffers_in_reverse_order() -> None:
    pool = make_pool()
    gc = GcArena()
    seen: list[tuple[str, int]] = []
    gc.take(pool)
    for name in ("first", "second", "third"):
        returned = gc.add_special(name, lambda n: seen.append((n, pool.stats.in_use)))
        assert returned == name
    assert seen == []
    gc.free()
    assert seen == [("third", 0), ("second", 0), ("first", 0)]
    assert gc.entries_freed == 4
    assert gc.bytes_freed == pool.frame.buffer_size  # specials count no bytes


def test_detach_hands_a_buffer_to_another_owner() -> None:
    pool = make_pool()
    gc = GcArena()
    keep = gc.take(pool)
    drop = gc.take(pool)
    assert gc.detach(keep) is keep
    gc.free()
    keep.append(b"awaiting ACK")  # still alive
    with pytest.raises(PoolError):
        drop.append(b"x")
    assert pool.stats.in_use == 1
    assert (gc.detached, gc.entries_freed) == (1, 1)
    pool.release(keep)  # its new owner releases it
    assert pool.stats.in_use == 0


def test_detach_of_a_non_entry_raises() -> None:
    pool = make_pool()
    gc = GcArena()
    outsider = pool.acquire()
    with pytest.raises(PoolError, match="not an entry"):
        gc.detach(outsider)
    buf = gc.take(pool)
    gc.detach(buf)
    with pytest.raises(PoolError, match="not an entry"):
        gc.detach(buf)  # detached twice
    assert gc.detached == 1


def test_alloc_gives_scratch_memory_unusable_after_free() -> None:
    gc = GcArena()
    scratch = gc.alloc(100)
    assert (scratch.capacity, scratch.offset, len(scratch)) == (100, 0, 0)
    scratch.write_text("options %s", "V4")
    gc.free()
    assert gc.bytes_freed == 100
    with pytest.raises(PoolError):
        scratch.data  # noqa: B018 - the access itself is what must raise


def test_take_from_an_exhausted_pool_registers_nothing() -> None:
    pool = make_pool(count=1)
    gc = GcArena()
    gc.take(pool)
    with pytest.raises(PoolExhausted):
        gc.take(pool)
    assert gc.live_entries == 1
    gc.free()
    assert pool.stats.in_use == 0


def test_free_releases_everything_despite_a_failing_destructor() -> None:
    pool = make_pool()
    gc = GcArena()
    ran: list[str] = []

    def broken(_: object) -> None:
        raise OSError("close failed")

    gc.add_special("a", ran.append)
    gc.add_special("b", broken)
    gc.take(pool)
    with pytest.raises(OSError, match="close failed"):
        gc.free()
    assert ran == ["a"]  # the one before the failure still ran
    assert pool.stats.in_use == 0
    assert gc.live_entries == 0
    gc.free()  # and the arena is clean for the next iteration
    assert gc.iterations == 1


def test_free_reports_a_buffer_released_behind_its_back() -> None:
    pool = make_pool()
    gc = GcArena()
    early = gc.take(pool)
    later = gc.take(pool)
    pool.release(early)  # a lifetime bug: the arena still owns it
    with pytest.raises(PoolError, match="double release"):
        gc.free()
    assert isinstance(later, Buffer)
    with pytest.raises(PoolError):
        later.append(b"x")  # the other entry was still released
    assert pool.stats.in_use == 0


def test_iterations_count_only_frees_that_freed_something() -> None:
    pool = make_pool()
    gc = GcArena()
    gc.free()
    with gc:
        pass
    assert gc.iterations == 0
    with gc:
        gc.take(pool)
    assert gc.iterations == 1


arena_ops = st.lists(
    st.one_of(
        st.just(("take", 0)),
        st.tuples(st.just("alloc"), st.integers(0, 64)),
        st.tuples(st.just("detach"), st.integers(0, 31)),
        st.just(("free", 0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(arena_ops)
def test_random_arena_use_never_leaks_and_counts_exactly(ops: list[tuple[str, int]]) -> None:
    pool = make_pool(count=6)
    block = pool.frame.buffer_size
    gc = GcArena()
    entries: list[Buffer] = []  # the model: what the arena holds now
    detached: list[Buffer] = []
    freed: list[Buffer] = []
    iterations = entries_freed = bytes_freed = 0
    for op, arg in ops:
        if op == "take":
            if pool.available:
                entries.append(gc.take(pool))
            else:
                with pytest.raises(PoolExhausted):
                    gc.take(pool)
        elif op == "alloc":
            entries.append(gc.alloc(arg))
        elif op == "detach" and entries:
            buf = entries.pop(arg % len(entries))
            assert gc.detach(buf) is buf
            detached.append(buf)
        elif op == "free":
            if entries:
                iterations += 1
                entries_freed += len(entries)
                bytes_freed += sum(buf.capacity for buf in entries)
            gc.free()
            freed += entries
            entries = []
        pooled_live = sum(1 for buf in entries + detached if buf.capacity == block)
        assert pool.stats.in_use == pooled_live
        assert gc.live_entries == len(entries)
        assert (gc.iterations, gc.entries_freed, gc.bytes_freed) == (
            iterations,
            entries_freed,
            bytes_freed,
        )
        assert gc.detached == len(detached)
    gc.free()
    freed += entries
    # A freed buffer object comes back from the pool on a later take (LIFO reuse), so only those
    # not now held as detached must refuse use.
    for buf in freed:
        if not any(buf is alive for alive in detached):
            with pytest.raises(PoolError):
                len(buf)
    for buf in detached:
        len(buf)  # detached entries are alive until their owner lets go
        if buf.capacity == block:
            pool.release(buf)
    assert pool.stats.in_use == 0
