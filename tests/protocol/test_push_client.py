"""The client half of push (push_client.py): requests, the reply's checks, the server's verdicts."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from tests.protocol.harness import tls_settings
from tunnel.protocol.errors import PushRejected, SessionEnd
from tunnel.protocol.push_client import PushClient
from tunnel.protocol.settings import SessionSettings
from tunnel.runtime import session_settings


def client_settings(**changes: object) -> SessionSettings:
    settings = session_settings(is_client=True, tls=tls_settings("client"),
                                data_ciphers=("AES-256-GCM", "AES-128-GCM"))
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def ended(push: PushClient, keyword: str, text: str,
          remote_cipher: str | None = None) -> SessionEnd:
    with pytest.raises(SessionEnd) as end:
        push.on_message(keyword, text, remote_cipher)
    return end.value


def test_requests_repeat_every_interval_until_a_reply_is_applied() -> None:
    push = PushClient(client_settings(push_request_interval=5.0))
    assert push.request_due(100.0) and push.next_request == 105.0
    assert not push.request_due(104.9)
    assert push.request_due(105.0)
    assert push.on_message("PUSH_REPLY", "PUSH_REPLY,cipher AES-256-GCM", None) is not None
    assert push.next_request is None and not push.request_due(1000.0)


def test_a_reply_in_parts_is_applied_once_whole_and_a_repeat_is_ignored() -> None:
    push = PushClient(client_settings())
    first = "PUSH_REPLY,route-gateway 10.8.0.1,push-continuation 2"
    assert push.on_message("PUSH_REPLY", first, None) is None and push.pushed is None
    applied = push.on_message("PUSH_REPLY", "PUSH_REPLY,cipher AES-128-GCM,peer-id 7,"
                              "protocol-flags cc-exit,push-continuation 1", None)
    assert applied is not None
    options, cipher = applied
    assert cipher == "AES-128-GCM" and options.peer_id == 7 and options.route_gateway
    assert push.pushed is options and push.cc_exit
    assert push.on_message("PUSH_REPLY", "PUSH_REPLY,cipher AES-256-GCM", None) is None


def test_cipher_choice_as_stock() -> None:
    push = PushClient(client_settings(data_ciphers_fallback="AES-128-CBC"))
    assert push.choose_cipher("aes-256-gcm", None) == "AES-256-GCM"
    assert push.choose_cipher("AES-128-CBC", None) == "AES-128-CBC"  # the fallback is allowed
    with pytest.raises(SessionEnd, match="negotiated cipher not allowed - CHACHA20-POLY1305"):
        push.choose_cipher("CHACHA20-POLY1305", None)
    assert push.choose_cipher(None, "AES-128-GCM") == "AES-128-GCM"  # poor man's NCP
    assert push.choose_cipher(None, None) == "AES-128-CBC"  # the server named none
    with pytest.raises(SessionEnd, match="Add the server's cipher \\('BF-CBC'\\)"):
        push.choose_cipher(None, "BF-CBC")
    without = PushClient(client_settings())
    with pytest.raises(SessionEnd, match="Configure --data-ciphers-fallback"):
        without.choose_cipher(None, None)


def test_pushed_compression_needs_allow_compression() -> None:
    end = ended(PushClient(client_settings()), "PUSH_REPLY",
                "PUSH_REPLY,cipher AES-256-GCM,compress lz4")
    assert end.reason.startswith("OPTIONS ERROR: server pushed compression") and not end.restart
    allowed = PushClient(client_settings(allow_compression="asym"))
    assert allowed.on_message("PUSH_REPLY", "PUSH_REPLY,cipher AES-256-GCM,compress lz4",
                              None) is not None


def test_server_verdicts_end_the_session_as_stock() -> None:
    push = PushClient(client_settings())
    assert not ended(push, "AUTH_FAILED", "AUTH_FAILED").restart  # auth-retry none
    retry = PushClient(client_settings(auth_retry="nointeract"))
    assert ended(retry, "AUTH_FAILED", "AUTH_FAILED,bad").restart
    assert ended(push, "RESTART", "RESTART").restart
    assert not ended(push, "HALT", "HALT").restart
    assert ended(push, "EXIT", "EXIT").restart
    assert ended(push, "PUSH_REPLY", "PUSH_REPLY,ping notanumber").reason.startswith(
        "bad PUSH_REPLY")


def test_pull_filter_reject_restarts() -> None:
    def reject(text: str) -> str:
        raise PushRejected("Pushed option rejected by pull-filter: 'route 10.0.0.0'")

    end = ended(PushClient(client_settings(push_filter=reject)), "PUSH_REPLY",
                "PUSH_REPLY,route 10.0.0.0")
    assert end.restart and "Offending option received from server" in end.reason


def test_a_pushed_auth_token_replaces_the_password() -> None:
    push = PushClient(client_settings(username="alice", password="pw"))
    assert push.user_pass() == ("alice", "pw")
    push.on_message("PUSH_REPLY", "PUSH_REPLY,cipher AES-256-GCM,auth-token TOKEN", None)
    assert push.user_pass() == ("alice", "TOKEN")
    named = PushClient(client_settings(username="alice", password="pw"))
    user = base64.b64encode(b"bob").decode()
    named.on_message("PUSH_REPLY", f"PUSH_REPLY,cipher AES-256-GCM,auth-token-user {user},"
                     "auth-token T2", None)
    assert named.user_pass() == ("bob", "T2")


def test_a_credential_source_that_fails_ends_the_session_for_good() -> None:
    def unreadable() -> tuple[str, str]:
        raise OSError("no such file")

    push = PushClient(client_settings(read_user_pass=unreadable))
    with pytest.raises(SessionEnd, match="auth-user-pass: no such file") as end:
        push.user_pass()
    assert not end.value.restart
