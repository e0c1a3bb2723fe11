"""pull-filter on PUSH_REPLY texts (app/pullfilter.py)."""

from __future__ import annotations

import logging

import pytest

from tests.protocol.harness import Pair
from tunnel.app.pullfilter import make_push_filter
from tunnel.protocol.errors import PushRejected
from tunnel.protocol.events import SessionClosed

LOG = logging.getLogger("test")


def test_first_matching_filter_decides() -> None:
    apply = make_push_filter([("accept", "route 10.1."), ("ignore", "route "),
                              ("ignore", "dhcp-option DNS")], LOG)
    text = ("PUSH_REPLY,route 10.1.0.0 255.255.0.0,route 10.2.0.0 255.255.0.0,"
            "dhcp-option DNS 1.1.1.1,ping 10")
    assert apply(text) == "PUSH_REPLY,route 10.1.0.0 255.255.0.0,ping 10"
    assert apply("AUTH_FAILED") == "AUTH_FAILED"


def test_reject_refuses_the_push() -> None:
    apply = make_push_filter([("reject", "redirect-gateway")], LOG)
    with pytest.raises(PushRejected, match="rejected by pull-filter"):
        apply("PUSH_REPLY,redirect-gateway def1,ping 10")


def test_reject_restarts_the_connection_as_stock() -> None:
    """A rejected push restarts (SIGUSR1 in stock): the session ends with restart=True and the
    client connects again, getting the same push again (and so again a restart)."""
    pair = Pair(reconnect=True)
    pair.client.settings.push_filter = make_push_filter([("reject", "route-gateway")], LOG)
    pair.client.session = pair.client._start(pair.now)
    first = pair.client.session
    pair.run(4)
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed, "the rejected push did not end the session"
    assert closed[0].restart is True
    assert "rejected by pull-filter: 'route-gateway 10.8.0.1'" in closed[0].reason
    assert "Offending option received from server" in closed[0].reason
    assert pair.client.finished is None  # not the end: connect-retry applies
    pair.run(10)
    assert pair.client.session is not first  # it connected again
    assert first.pushed is None


def test_reject_with_connect_retry_max_gives_up() -> None:
    pair = Pair(reconnect=True)
    pair.client.settings.push_filter = make_push_filter([("reject", "ping ")], LOG)
    pair.client.max_tries = 1
    pair.client.session = pair.client._start(pair.now)
    pair.run(6)
    assert pair.client.finished is not None
    assert "connect-retry-max" in pair.client.finished.reason
