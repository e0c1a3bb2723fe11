"""Username/password in the protocol: KM2 credentials, a deferred verdict, AUTH_FAILED and
the client's auth-retry, username-as-common-name, a client without a certificate."""

from __future__ import annotations

import dataclasses

import pytest

from tests.protocol.harness import Pair, tls_settings
from tunnel.protocol.events import AuthRequested, SessionClosed
from tunnel.protocol.verdicts import TO_TUN


def _pair(*, auth_retry: str = "none", no_cert: bool = False) -> Pair:
    client_tls = tls_settings("client")
    if no_cert:
        client_tls = dataclasses.replace(client_tls, cert="", key="")
    server_tls = dataclasses.replace(tls_settings("server"),
                                     verify_client_cert="none" if no_cert else "require")
    return Pair(client_tls=client_tls, server_tls=server_tls,
                client_settings={}, server_settings={})


def _configure(pair: Pair, *, auth_retry: str, uacn: bool = False) -> None:
    pair.client.settings.username, pair.client.settings.password = "alice", "pw"
    pair.client.settings.auth_retry = auth_retry
    pair.server.settings.session.defer_auth = True
    pair.server.settings.session.username_as_common_name = uacn
    pair.client.session = pair.client._start(pair.now)


def _requests(pair: Pair) -> list[AuthRequested]:
    return [e for e in pair.server_events if isinstance(e, AuthRequested)]


@pytest.mark.parametrize("no_cert", [False, True])
def test_accepted_credentials_bring_the_tunnel_up(no_cert: bool) -> None:
    pair = _pair(no_cert=no_cert)
    _configure(pair, auth_retry="none", uacn=True)
    pair.run(3)
    (request,) = _requests(pair)
    assert (request.username, request.password) == ("alice", "pw")
    assert "pw" not in repr(request)
    session = pair.server.sessions[0]
    assert session.peer_common_name == "alice"  # username-as-common-name
    pair.server.authorize(session, request.auth_id, True, "", None, pair.now)
    pair.run(3)
    up = pair.client_sends(b"hi")
    assert up is not None and pair.to_server(up) == TO_TUN


@pytest.mark.parametrize(("auth_retry", "restart"), [("none", False), ("nointeract", True),
                                                     ("interact", True)])
def test_auth_failed_and_auth_retry(auth_retry: str, restart: bool) -> None:
    pair = _pair()
    _configure(pair, auth_retry=auth_retry)
    pair.run(3)
    (request,) = _requests(pair)
    pair.server.authorize(pair.server.sessions[0], request.auth_id, False, "bad password", None,
                          pair.now)
    pair.run(3)
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed and "AUTH_FAILED" in closed[0].reason
    assert closed[0].restart is restart
