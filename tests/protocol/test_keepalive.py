"""Keepalive and OCC (keepalive.py): the policy alone, then pings through a client/server pair."""

from __future__ import annotations

from tests.protocol.harness import Pair
from tunnel.protocol.constants import OCC_EXIT, OCC_MAGIC, OCC_REPLY, OCC_REQUEST
from tunnel.protocol.events import DataChannelReady, PushApplied
from tunnel.protocol.keepalive import (
    OCC_EXIT_MESSAGE,
    Keepalive,
    KeepaliveDue,
    OccKind,
    occ_kind,
    occ_reply,
)
from tunnel.runtime import Timers


def _connected(pair: Pair) -> None:
    pair.connect()
    assert any(isinstance(e, PushApplied) for e in pair.client_events), pair.client_events
    assert any(isinstance(e, DataChannelReady) for e in pair.client_events)
    assert any(isinstance(e, DataChannelReady) for e in pair.server_events)


def test_ping_is_due_after_ping_seconds_of_sending_nothing() -> None:
    keepalive = Keepalive(10.0, 60.0)
    assert keepalive.due(109.9, last_rx=100.0, last_tx=100.0, sending=True) is KeepaliveDue.NOTHING
    assert keepalive.due(110.0, last_rx=100.0, last_tx=100.0, sending=True) is KeepaliveDue.PING
    # No data key yet: nothing to ping with.
    assert keepalive.due(110.0, last_rx=100.0, last_tx=100.0, sending=False) is KeepaliveDue.NOTHING
    assert keepalive.next_deadline(100.0, 105.0, sending=True) == 115.0  # ping, the earlier
    assert keepalive.next_deadline(100.0, 105.0, sending=False) == 160.0  # only ping-restart
    # Silent peer, busy sender: the ping-restart deadline is the earlier one.
    assert keepalive.next_deadline(0.0, 100.0, sending=True) == 60.0


def test_ping_restart_wins_over_ping_and_zero_disables_both() -> None:
    keepalive = Keepalive(10.0, 60.0)
    assert keepalive.due(160.0, last_rx=100.0, last_tx=100.0, sending=True) is KeepaliveDue.RESTART
    off = Keepalive(0.0, 0.0)
    assert off.due(1e9, last_rx=0.0, last_tx=0.0, sending=True) is KeepaliveDue.NOTHING
    assert off.next_deadline(0.0, 0.0, sending=True) is None
    assert Keepalive(10.0, 0.0).next_deadline(0.0, 5.0, sending=True) == 15.0  # ping alone


def test_pushed_values_replace_the_configured_ones_only_when_pushed() -> None:
    keepalive = Keepalive(10.0, 60.0)
    keepalive.apply_push(None, 120)
    assert (keepalive.ping, keepalive.ping_restart) == (10.0, 120.0)
    keepalive.apply_push(5, None)
    assert (keepalive.ping, keepalive.ping_restart) == (5.0, 120.0)


def test_occ_messages() -> None:
    assert occ_kind(OCC_MAGIC + bytes([OCC_REQUEST])) is OccKind.REQUEST
    assert occ_kind(OCC_MAGIC + bytes([OCC_REPLY]) + b"V4\0") is OccKind.REPLY
    assert occ_kind(OCC_EXIT_MESSAGE) is OccKind.EXIT and OCC_EXIT_MESSAGE[-1] == OCC_EXIT
    assert occ_kind(OCC_MAGIC + b"\x7f") is OccKind.OTHER
    assert occ_reply("V4,dev-type tun") == OCC_MAGIC + bytes([OCC_REPLY]) + b"V4,dev-type tun\0"


def test_keepalive_pings_are_consumed_and_keep_the_session_up() -> None:
    pair = Pair(timers=Timers(ping=2, ping_restart=10))
    _connected(pair)
    pair.run(30, step=0.5)
    assert pair.client.session.closed is None
    assert pair.server.sessions and pair.server.sessions[0].closed is None


def test_ping_restart_after_silence_and_reconnect() -> None:
    pair = Pair(timers=Timers(ping=2, ping_restart=10), reconnect=True)
    _connected(pair)
    first = pair.client.session
    # The server goes silent: its datagrams are lost from now on.
    pair.link.loss = lambda _n: True
    pair.run(15, step=0.5)
    assert first.closed is not None and first.closed.restart
    assert "ping-restart" in first.closed.reason
    pair.link.loss = lambda _n: False
    pair.run(20, step=0.25)
    assert pair.client.session is not first
    assert pair.client.session.send_key is not None
    assert pair.client.connects == 2


def test_ping_payload_is_consumed_not_forwarded() -> None:
    pair = Pair(timers=Timers(ping=1, ping_restart=60))
    _connected(pair)
    pair.to_server_tun.clear()
    pair.run(5)
    assert pair.to_server_tun == []  # pings never reach the TUN device




def test_an_idle_server_session_takes_the_keepalive_only_timer_round_and_leaves_it() -> None:
    """An established, idle server session's timer runs only the keepalive (the steady round):
    its ping still goes out after `ping` seconds of sending nothing, a renegotiation still
    starts when reneg-sec is due, and during it the full round runs again."""
    pair = Pair(timers=Timers(ping=10, ping_restart=60))
    pair.connect()
    session = pair.server.sessions[0]
    assert session._steady(pair.now)
    received = pair.client.session.last_rx
    sent = session.last_tx
    pair.run(12.0)
    assert session.last_tx >= sent + 10.0  # the server's own ping, on time
    assert pair.client.session.last_rx > received
    assert session._steady(pair.now)
    # reneg-sec due: the steady round must not hide it.
    assert session.rekey.at is not None
    session.rekey.at = pair.now + 1.0
    pair.server.touch(session)  # as the session does when it plans one: the timer re-reads
    pair.run(0.5)
    assert session._steady(pair.now)
    pair.run(1.0)
    assert not session._steady(pair.now)  # the soft reset is in progress: the full round
    pair.run(5.0)
    assert session.primary.key_id == 1 and session.renegotiations >= 1
    # The old key stays as the lame duck until tran-window: the full round expires it.
    assert session.ring.lame_duck is not None and not session._steady(pair.now)
