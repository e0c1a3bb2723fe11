"""Renegotiation: when it is due (rekey.py) and what a stream of rekeys looks like on the wire."""

from __future__ import annotations

import itertools
import random

from tests.protocol.harness import Pair
from tunnel.protocol.events import DataChannelReady, PushApplied
from tunnel.protocol.rekey import RekeySchedule, next_key_id
from tunnel.protocol.verdicts import TO_TUN
from tunnel.runtime import Timers


def _connected(pair: Pair) -> None:
    pair.connect()
    assert any(isinstance(e, PushApplied) for e in pair.client_events), pair.client_events
    assert any(isinstance(e, DataChannelReady) for e in pair.client_events)
    assert any(isinstance(e, DataChannelReady) for e in pair.server_events)


def test_next_key_id_counts_one_to_seven_and_never_returns_to_zero() -> None:
    assert [next_key_id(k) for k in range(8)] == [1, 2, 3, 4, 5, 6, 7, 1]


def test_client_schedule_is_reneg_sec_after_activation() -> None:
    rekey = RekeySchedule(100.0, jitter=False)
    assert not rekey.due(50.0, 149.9, wrap_near=False)
    assert rekey.at == 150.0
    assert rekey.due(50.0, 150.0, wrap_near=False)
    rekey.clear()
    assert rekey.at is None


def test_server_schedule_has_up_to_ten_percent_jitter_earlier() -> None:
    random.seed(3)
    ats = []
    for _ in range(200):
        rekey = RekeySchedule(1000.0, jitter=True)
        rekey.due(0.0, 0.0, wrap_near=False)
        assert rekey.at is not None
        ats.append(rekey.at)
    assert all(900.0 <= at <= 1000.0 for at in ats)
    assert max(ats) - min(ats) > 50  # really spread, not a constant


def test_packet_id_wrap_is_due_at_once_even_without_reneg_sec() -> None:
    rekey = RekeySchedule(0.0, jitter=False)
    assert not rekey.due(None, 10.0, wrap_near=False) and rekey.at is None
    assert rekey.due(None, 10.0, wrap_near=True)


def test_reneg_sec_rotates_key_ids_and_wraps_to_one() -> None:
    timers = Timers(ping=2, ping_restart=30, reneg_sec=5)
    pair = Pair(timers=timers)
    _connected(pair)
    seen: list[int] = []
    for _ in range(60):
        pair.run(1.0)
        up = pair.client_sends(b"x")
        assert up is not None and pair.to_server(up) == TO_TUN
        key = pair.client.session.send_key
        assert key is not None
        if not seen or seen[-1] != key.key_id:
            seen.append(key.key_id)
    # Each rekey moves to the next key_id, and after 7 comes 1, never 0 again (ssl.c).
    assert len(seen) >= 9, seen
    assert all(b == next_key_id(a) for a, b in itertools.pairwise(seen)), seen
    assert (7, 1) in set(itertools.pairwise(seen)), seen
    assert 0 not in seen[1:]


