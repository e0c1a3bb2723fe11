"""The server half of push (push_server.py): the reply's negotiated items, its guards, refusals.

A pushed option too long for one PUSH_REPLY part refuses that client; it never raises. The
config's own pushes are bounded when it is read (tests/config/test_bounds.py); this is the
session's guard for per-client options (ccd files, scripts) that reach it unchecked.
"""

from __future__ import annotations

import pytest

from tests.protocol.harness import Pair, tls_settings
from tunnel.protocol.errors import SessionEnd
from tunnel.protocol.events import ClientRefused, SessionClosed
from tunnel.protocol.messages import max_pushed_option, parse_push_reply
from tunnel.protocol.push_server import AUTH_FAILED_LINGER, PUSH_REPEAT_GUARD, PushServer
from tunnel.runtime import session_settings


def server_push() -> PushServer:
    return PushServer(session_settings(is_client=False, tls=tls_settings("server")))


def test_reply_carries_the_negotiated_items_in_stock_order() -> None:
    push = server_push()
    messages = push.build_reply(["route-gateway 10.8.0.1", "ifconfig 10.8.0.2 255.255.255.0"],
                                cipher="AES-256-GCM", tx_peer_id=3, cc_exit=True,
                                dyn_tls_crypt=True, tun_mtu=1500)
    assert messages is not None and len(messages) == 1
    assert messages[0] == ("PUSH_REPLY,route-gateway 10.8.0.1,ifconfig 10.8.0.2 255.255.255.0,"
                           "peer-id 3,cipher AES-256-GCM,protocol-flags cc-exit dyn-tls-crypt,"
                           "tun-mtu 1500")
    options, more = parse_push_reply(messages[0])
    assert not more and options.peer_id == 3 and options.cipher == "AES-256-GCM"
    plain = push.build_reply([], cipher="AES-128-GCM", tx_peer_id=None, cc_exit=False,
                             dyn_tls_crypt=False, tun_mtu=None)
    assert plain == ["PUSH_REPLY,cipher AES-128-GCM"]


def test_a_repeated_request_within_30_s_is_ignored_and_nothing_before_a_cipher() -> None:
    push = server_push()
    assert not push.reply_wanted(100.0, None)  # no key-method 2 yet: the client asks again
    assert push.reply_wanted(100.0, "AES-256-GCM")
    push.replied_at = 100.0
    assert not push.reply_wanted(100.0 + PUSH_REPEAT_GUARD - 0.1, "AES-256-GCM")
    assert push.reply_wanted(100.0 + PUSH_REPEAT_GUARD, "AES-256-GCM")


def test_refusal_text_linger_and_the_clients_exit() -> None:
    push = server_push()
    assert push.on_message("PUSH_REQUEST") and push.requested
    push.refuse("no shared cipher")
    assert push.refusal_message() == "AUTH_FAILED,no shared cipher"
    push.refuse("client-deny", "AUTH_FAILED,go away")
    assert push.refusal_message() == "AUTH_FAILED,go away" and push.refusal == "client-deny"
    push.linger(10.0)
    push.linger(12.0)  # the first linger decides
    assert push.close_at == 10.0 + AUTH_FAILED_LINGER
    with pytest.raises(SessionEnd) as end:
        push.on_message("EXIT")
    assert not end.value.restart and "explicit-exit-notify" in end.value.reason


def test_a_reply_that_cannot_be_built_refuses_the_client() -> None:
    push = server_push()
    long = "setenv-safe X " + "x" * (max_pushed_option() + 1)
    assert push.build_reply([long], cipher="AES-256-GCM", tx_peer_id=None, cc_exit=False,
                            dyn_tls_crypt=False, tun_mtu=None) is None
    assert push.refusal is not None and push.refusal.startswith("cannot push the options")


def test_an_overlong_pushed_option_fails_the_client_cleanly() -> None:
    pair = Pair()
    pair.server.settings.push = ("setenv-safe X " + "x" * max_pushed_option(),)
    pair.connect(5)  # raised "pushed option too long for one 1024-byte part" before
    assert pair.client.session.pushed is None
    refused = [e for e in pair.server_events if isinstance(e, ClientRefused)]
    assert refused and "cannot push the options" in refused[0].reason, pair.server_events
    assert any(isinstance(e, SessionClosed) for e in pair.client_events), pair.client_events


def test_an_option_of_the_maximum_length_is_pushed() -> None:
    pair = Pair()
    option = "setenv-safe X " + "x" * (max_pushed_option() - len("setenv-safe X "))
    pair.server.settings.push = (option,)
    pair.connect(5)
    assert pair.client.session.pushed is not None
