"""`Client`'s connection loop, sans-I/O: server poll timeout, connect-retry, connect-retry-max,
a lost link (TCP), per-remote timings (<connection> blocks)."""

from __future__ import annotations

from tests.protocol.harness import tls_settings
from tunnel.protocol.client import Client
from tunnel.protocol.events import SessionClosed
from tunnel.runtime import session_settings

REMOTES = [("192.0.2.1", 1194), ("192.0.2.2", 443)]


def client(**kwargs: object) -> Client:
    settings = session_settings(is_client=True, tls=tls_settings("client"))
    return Client(settings, REMOTES, 0.0, **kwargs)  # type: ignore[arg-type]


def run_until(c: Client, until: float) -> list[SessionClosed]:
    """Fire the client's timer until `until` (nothing ever answers); the sessions that closed."""
    closed = []
    now = 0.0
    for _ in range(1000):
        timer = c.get_timer()
        if timer is None or timer > until or c.finished is not None:
            break
        now = max(now, timer)
        c.handle_timer(now)
        c.datagrams_to_send(now)
        while (event := c.next_event()) is not None:
            if isinstance(event, SessionClosed):
                closed.append(event)
    return closed


def test_server_poll_timeout_moves_on_to_the_next_remote_at_once() -> None:
    c = client(retry=(5.0, 300.0), poll_timeout=3.0)
    assert c.remote == REMOTES[0]
    closed = run_until(c, 3.0)
    assert [e.reason for e in closed] == ["Server poll timeout, restarting"]
    run_until(c, 3.0)  # no pause after a poll timeout (init.c: restart_sleep_seconds = -1)
    assert c.remote == REMOTES[1] and c.session.created_at == 3.0


def test_a_lost_link_waits_connect_retry_then_tries_the_next_remote() -> None:
    c = client(retry=(2.0, 300.0), poll_timeout=100.0)
    c.connection_lost(1.0, "TCP: connect to 192.0.2.1:1194 failed: Connection refused")
    assert c.get_timer() == 3.0  # 1 s + connect-retry 2
    run_until(c, 3.0)
    assert c.remote == REMOTES[1]


def test_connect_retry_max_ends_after_that_many_rounds() -> None:
    c = client(retry=(1.0, 300.0), poll_timeout=2.0, max_tries=2)
    run_until(c, 100.0)
    assert c.finished is not None
    assert "connect-retry-max (2) times unsuccessful" in c.finished.reason
    assert c.connects == 4  # 2 remotes x 2 tries


def test_backoff_starts_after_five_tries_per_remote_and_is_capped() -> None:
    c = client(retry=(1.0, 8.0), poll_timeout=0.0)
    pauses = []
    now = 0.0
    for _ in range(16):
        c.connection_lost(now, "refused")
        timer = c.get_timer()
        assert timer is not None
        pauses.append(timer - now)
        now = timer
        c.handle_timer(now)
    # 10 unsuccessful tries (5 per remote) at connect-retry, then doubling up to MAX
    assert pauses[:9] == [1.0] * 9
    assert pauses[9:] == [2.0, 2.0, 4.0, 4.0, 8.0, 8.0, 8.0]


def test_per_remote_timings() -> None:
    c = client(retry=(1.0, 300.0), poll_timeout=60.0,
               per_remote_timing=[((1.0, 300.0), 2.0), ((1.0, 300.0), 60.0)])
    closed = run_until(c, 2.0)
    assert len(closed) == 1 and c.session.created_at == 2.0  # the first remote's own 2 s
    assert c.remote == REMOTES[1]
