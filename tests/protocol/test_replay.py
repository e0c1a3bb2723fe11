"""ReplayWindow: OpenVPN's sliding packet-id window with its time backtrack."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnel.protocol.replay import ReplayWindow


class ReferenceWindow:
    """The rules written as plainly as possible: a set of seen ids, the highest and its time."""

    def __init__(self, size: int, seconds: float) -> None:
        self.size = size
        self.seconds = seconds
        self.seen: set[int] = set()
        self.highest = 0
        self.highest_time = 0.0

    def accept(self, pid: int, now: float) -> bool:
        if pid <= 0:
            return False
        if pid > self.highest:
            self.seen.add(pid)
            self.highest = pid
            self.highest_time = now
            return True
        if self.highest - pid >= self.size or pid in self.seen:
            return False
        if now - self.highest_time > self.seconds:
            return False
        self.seen.add(pid)
        return True


# --- basic rules ---------------------------------------------------------------------------


def test_pid_zero_always_rejected() -> None:
    w = ReplayWindow()
    assert not w.accept(0, 0.0)
    assert w.accept(1, 0.0)
    assert not w.accept(0, 0.0)
    assert (w.accepted, w.replays) == (1, 2)


def test_increasing_ids_accepted_and_duplicates_rejected() -> None:
    w = ReplayWindow()
    for pid in range(1, 200):
        assert w.accept(pid, 1.0)
        assert not w.accept(pid, 1.0)
    assert w.highest == 199
    assert (w.accepted, w.replays) == (199, 199)


def test_out_of_order_within_window_accepted_once() -> None:
    w = ReplayWindow(size=64)
    assert w.accept(100, 0.0)
    assert w.accept(37, 0.0)  # diff 63: the oldest slot still inside the window
    assert not w.accept(37, 0.0)
    assert not w.accept(36, 0.0)  # diff 64: outside
    assert w.accept(99, 0.0)
    assert not w.accept(100, 0.0)


def test_gaps_can_be_filled_later() -> None:
    w = ReplayWindow(size=8)
    assert w.accept(10, 0.0)
    assert w.accept(3, 0.0)
    assert w.accept(12, 0.0)  # shift by 2: 10 and the gap at 11 move along
    assert w.accept(11, 0.0)
    assert not w.accept(10, 0.0)
    assert w.accept(5, 0.0)  # diff 7 < 8
    assert not w.accept(4, 0.0)  # diff 8


def test_jump_beyond_window_forgets_old_slots() -> None:
    w = ReplayWindow(size=16)
    assert w.accept(5, 0.0)
    assert w.accept(1_000_000, 0.0)
    assert not w.accept(5, 0.0)  # far outside the window now
    assert w.accept(1_000_000 - 15, 0.0)
    assert not w.accept(1_000_000 - 16, 0.0)
    assert not w.accept(1_000_000, 0.0)


def test_highest_u32_handled() -> None:
    w = ReplayWindow()
    assert w.accept(0xFFFFFFFF, 0.0)
    assert not w.accept(0xFFFFFFFF, 0.0)
    assert w.accept(0xFFFFFFFE, 0.0)


def test_size_one_accepts_only_increasing() -> None:
    w = ReplayWindow(size=1)
    assert w.accept(5, 0.0)
    assert not w.accept(4, 0.0)
    assert not w.accept(5, 0.0)
    assert w.accept(6, 0.0)


@pytest.mark.parametrize("size", [0, -1, 65537, 1 << 40])
def test_size_out_of_range(size: int) -> None:
    with pytest.raises(ValueError):
        ReplayWindow(size=size)


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_seconds_out_of_range(seconds: float) -> None:
    with pytest.raises(ValueError):
        ReplayWindow(seconds=seconds)


def test_size_must_be_int() -> None:
    with pytest.raises(TypeError):
        ReplayWindow(size=64.0)  # type: ignore[arg-type]


def test_repr_shows_state() -> None:
    w = ReplayWindow(size=32, seconds=5)
    w.accept(3, 0.0)
    assert "highest=3" in repr(w) and "size=32" in repr(w)


# --- the time backtrack rule ---------------------------------------------------------------


def test_late_out_of_order_packet_rejected_after_seconds() -> None:
    w = ReplayWindow(size=64, seconds=15.0)
    assert w.accept(10, 100.0)
    assert w.accept(5, 115.0)  # exactly `seconds` later: still in time
    assert not w.accept(6, 115.5)  # the highest is now more than 15 s old
    assert w.replays == 1


def test_new_highest_restarts_the_clock() -> None:
    w = ReplayWindow(size=64, seconds=15.0)
    assert w.accept(10, 0.0)
    assert not w.accept(5, 20.0)
    assert w.accept(11, 20.0)  # higher ids are always fine, and they refresh the time
    assert w.accept(5, 20.0)  # the slot was never consumed by the refused attempt
    assert not w.accept(5, 20.0)


def test_time_rule_does_not_affect_increasing_ids() -> None:
    w = ReplayWindow(seconds=0.0)
    t = 0.0
    for pid in range(1, 50):
        t += 100.0
        assert w.accept(pid, t)


def test_zero_seconds_allows_only_same_instant_reordering() -> None:
    w = ReplayWindow(seconds=0.0)
    assert w.accept(10, 1.0)
    assert w.accept(9, 1.0)
    assert not w.accept(8, 1.000001)


# --- exhaustive and property-based comparisons with the reference ----------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_exhaustive_small_sequences_match_reference(size: int) -> None:
    # Every sequence of 5 ids drawn from 0..6 (7**5 = 16807 sequences), no time effects.
    for seq in itertools.product(range(7), repeat=5):
        w = ReplayWindow(size=size)
        ref = ReferenceWindow(size, 15.0)
        for pid in seq:
            assert w.accept(pid, 0.0) == ref.accept(pid, 0.0), (size, seq)
        assert w.accepted + w.replays == len(seq)


events = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 200), st.integers(0, 0xFFFFFFFF)),
        st.floats(0.0, 10.0, allow_nan=False),  # time advance before this packet
    ),
    max_size=300,
)


@settings(deadline=None, max_examples=300)
@given(size=st.integers(1, 130), seconds=st.sampled_from([0.0, 1.0, 15.0]), evs=events)
def test_matches_reference_model(size: int, seconds: float, evs: list[tuple[int, float]]) -> None:
    w = ReplayWindow(size=size, seconds=seconds)
    ref = ReferenceWindow(size, seconds)
    now = 0.0
    accepted = 0
    for pid, dt in evs:
        now += dt
        got = w.accept(pid, now)
        assert got == ref.accept(pid, now), (pid, now)
        accepted += got
    assert w.accepted == accepted
    assert w.replays == len(evs) - accepted


@settings(deadline=None, max_examples=100)
@given(size=st.integers(1, 100), pids=st.lists(st.integers(1, 300), max_size=400))
def test_no_pid_accepted_twice(size: int, pids: list[int]) -> None:
    w = ReplayWindow(size=size)
    seen: set[int] = set()
    for pid in pids:
        if w.accept(pid, 0.0):
            assert pid not in seen
            seen.add(pid)
