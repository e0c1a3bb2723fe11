"""management-client-auth in the protocol: keys wait for Server.authorize (sans-I/O, fake clock)."""

from __future__ import annotations

import dataclasses

from tests.protocol.harness import SERVER_ADDR, Pair
from tunnel.protocol.client import Client
from tunnel.protocol.deferred_auth import DeferredAuth
from tunnel.protocol.events import AuthRequested, DataChannelReady, SessionClosed


def deferred_pair(credentials: bool = True) -> Pair:
    pair = Pair()
    pair.server.settings.session.defer_auth = True
    if credentials:
        settings = dataclasses.replace(pair.client.session.settings, username="alice",
                                       password="pw")
        pair.client = Client(settings, [SERVER_ADDR], pair.now)
    return pair


def requests(pair: Pair) -> list[AuthRequested]:
    return [e for e in pair.server_events if isinstance(e, AuthRequested)]


def test_nothing_flows_until_approved_then_rekeys_ask_again() -> None:
    pair = deferred_pair()
    pair.connect(3)
    (first,) = requests(pair)
    assert (first.auth_id, first.reauth, first.username, first.password) == (1, False,
                                                                              "alice", "pw")
    assert pair.client.session.pushed is None  # no PUSH_REPLY before the verdict
    session = pair.server.sessions[0]
    assert session.send_key is None
    assert pair.server.authorize(session, 1, True, "", None, pair.now)
    pair.run(3)
    assert pair.client.session.pushed is not None
    assert any(isinstance(e, DataChannelReady) for e in pair.server_events)
    datagram = pair.client_sends(b"hello")
    assert datagram is not None and pair.to_server(datagram) >= 0
    assert pair.to_server_tun and pair.to_server_tun[-1].endswith(b"hello")

    # A renegotiation: REAUTH. As with stock, what the client sends on the new key before the
    # verdict is dropped (the key is not authenticated yet); after it, data flows again.
    assert pair.client.session.renegotiate(pair.now)
    pair.run(2)
    reauth = requests(pair)[-1]
    assert reauth.reauth and reauth.auth_id == 2
    assert pair.server.authorize(session, 2, True, "", None, pair.now)
    pair.run(3)
    for payload in (b"after-1", b"after-2"):
        datagram = pair.client_sends(payload)
        assert datagram is not None
        pair.to_server(datagram)
        assert pair.to_server_tun[-1].endswith(payload), payload


def test_deny_sends_auth_failed_with_the_client_reason() -> None:
    pair = deferred_pair()
    pair.connect(3)
    session = pair.server.sessions[0]
    assert pair.server.authorize(session, 1, False, "not listed", "Go away", pair.now)
    assert not pair.server.authorize(session, 1, True, "", None, pair.now)  # decided already
    pair.run(8)
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed and "AUTH_FAILED,Go away" in closed[0].reason
    assert "not listed" not in closed[0].reason  # the log reason stays on the server


def test_no_credentials_no_deferral() -> None:
    pair = deferred_pair(credentials=False)
    pair.connect(3)
    assert not requests(pair) and pair.client.session.pushed is None


def test_deferred_auth_ids_count_from_one_and_the_first_request_starts_the_deadline() -> None:
    auth = DeferredAuth(hand_window=60.0)
    assert auth.request(0, since=100.0) == 1
    assert auth.request(1, since=130.0) == 2
    assert auth.deadline == 160.0 and auth.waiting(0) and auth.waiting(1)
    assert not auth.expired(159.9) and auth.expired(160.0)
    assert auth.take(1) == 0 and auth.take(1) is None
    auth.settled()
    assert auth.deadline == 160.0  # key_id 1 still waits
    assert auth.take(2) == 1
    auth.settled()
    assert auth.deadline is None and not auth.expired(1e9) and not auth.waiting(0)
