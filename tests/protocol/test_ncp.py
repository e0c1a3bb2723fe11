"""Cipher negotiation as OpenVPN 2.6 does it (ssl_ncp.c, multi.c), CBC entries included."""

from __future__ import annotations

import pytest

from tests.protocol.harness import Pair
from tunnel.protocol.events import ClientRefused, SessionClosed
from tunnel.protocol.messages import negotiate_cipher, options_string, options_string_value
from tunnel.protocol.verdicts import TO_TUN
from tunnel.runtime import occ_cipher

OLD_PEER_INFO = "IV_VER=2.3.18\nIV_PLAT=linux\n"  # a 2.3 client: no IV_NCP, no IV_CIPHERS


def test_server_picks_its_first_cipher_the_client_lists_cbc_included() -> None:
    info = {"IV_CIPHERS": "AES-256-GCM:AES-256-CBC"}
    assert negotiate_cipher(["AES-256-CBC", "AES-256-GCM"], info) == "AES-256-CBC"
    assert negotiate_cipher(["aes-128-cbc", "AES-256-GCM"], info) == "AES-256-GCM"


def test_poor_mans_ncp_only_without_iv_ciphers() -> None:
    # ncp_get_best_cipher(): the OCC cipher counts only when the client sent no IV_CIPHERS.
    assert negotiate_cipher(["AES-256-CBC"], {}, remote_cipher="AES-256-CBC") == "AES-256-CBC"
    assert negotiate_cipher(["AES-256-CBC"], {"IV_NCP": "2"}, remote_cipher="AES-256-CBC") == (
        "AES-256-CBC")
    assert negotiate_cipher(
        ["AES-256-CBC"], {"IV_CIPHERS": "AES-256-GCM"}, remote_cipher="AES-256-CBC") is None


def test_fallback_only_for_a_client_that_announced_nothing() -> None:
    # multi.c: a known client cipher (list or OCC) that we do not share is a failure.
    assert negotiate_cipher(["AES-256-GCM"], {}, fallback="AES-256-CBC") == "AES-256-CBC"
    assert negotiate_cipher(["AES-256-GCM"], {}, fallback="AES-256-CBC",
                            remote_cipher="AES-128-CBC") is None
    assert negotiate_cipher(["AES-256-GCM"], {"IV_CIPHERS": "AES-128-CBC"},
                            fallback="AES-128-CBC") is None


def test_options_string_announces_the_cipher_as_stock() -> None:
    assert occ_cipher(["AES-256-GCM"], None, "SHA1") == (None, "SHA1", 128)  # BF-CBC placeholder
    assert occ_cipher(["AES-256-GCM"], "AES-256-CBC", "SHA256") == (None, "SHA256", 256)
    assert occ_cipher(["AES-256-CBC"], "aes-256-cbc", "SHA256") == ("AES-256-CBC", "SHA256", 256)
    assert occ_cipher(["AES-128-GCM"], "AES-128-GCM", "SHA1") == (
        "AES-128-GCM", "[null-digest]", 128)
    text = options_string(role="client", cipher="AES-256-CBC", auth="SHA256", keysize=256)
    assert text == ("V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,cipher AES-256-CBC,"
                    "auth SHA256,keysize 256,key-method 2,tls-client")
    assert options_string_value(text, "cipher") == "AES-256-CBC"
    assert options_string_value(text, "comp-lzo") is None


def _data_flows(pair: Pair) -> None:
    up = pair.client_sends(b"up")
    assert up is not None and pair.to_server(up) == TO_TUN
    down = pair.server_sends(b"down")
    assert down is not None and pair.to_client(down) == TO_TUN


@pytest.mark.parametrize("auth", ["SHA1", "SHA256", "SHA512"])
def test_cbc_negotiated_end_to_end_in_memory(auth: str) -> None:
    pair = Pair(client_ciphers=("AES-256-GCM", "AES-256-CBC"), server_ciphers=("AES-256-CBC",),
                client_settings={"auth": auth}, server_settings={"auth": auth})
    pair.connect()
    assert pair.client.session.cipher == "AES-256-CBC"
    _data_flows(pair)


def test_a_client_that_announces_no_cipher_gets_the_servers_fallback() -> None:
    # No IV_CIPHERS, no IV_NCP, no `cipher` in its options string: "No NCP or OCC cipher data
    # received from peer", so a server with data-ciphers-fallback uses it (multi.c).
    pair = Pair(client_ciphers=("AES-128-CBC",), server_ciphers=("AES-256-GCM",),
                client_settings={"peer_info": OLD_PEER_INFO},
                server_settings={"data_ciphers_fallback": "AES-128-CBC"})
    pair.connect()
    assert pair.server.sessions[0].remote_cipher is None
    assert pair.server.sessions[0].cipher == "AES-128-CBC"
    assert pair.client.session.cipher == "AES-128-CBC"
    _data_flows(pair)


def test_a_client_whose_occ_cipher_we_lack_is_refused_despite_the_fallback() -> None:
    pair = Pair(client_ciphers=("AES-128-CBC",), server_ciphers=("AES-256-GCM",),
                client_settings={"peer_info": OLD_PEER_INFO, "ciphername": "AES-128-CBC"},
                server_settings={"data_ciphers_fallback": "AES-128-CBC"})
    pair.run(15)
    assert any(isinstance(e, ClientRefused) for e in pair.server_events)


def test_a_2_3_client_with_an_occ_cipher_gets_poor_mans_ncp() -> None:
    pair = Pair(client_ciphers=("AES-256-CBC",), server_ciphers=("AES-256-GCM", "AES-256-CBC"),
                client_settings={"peer_info": OLD_PEER_INFO, "ciphername": "AES-256-CBC"})
    pair.connect()
    assert pair.server.sessions[0].remote_cipher == "AES-256-CBC"
    assert pair.server.sessions[0].cipher == "AES-256-CBC"
    _data_flows(pair)


def test_a_2_3_client_without_fallback_is_refused_as_stock() -> None:
    pair = Pair(client_ciphers=("AES-128-CBC",), server_ciphers=("AES-256-GCM",),
                client_settings={"peer_info": OLD_PEER_INFO})
    pair.run(15)
    assert any(isinstance(e, ClientRefused) for e in pair.server_events)
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed and "Data channel cipher negotiation failed" in closed[0].reason


def test_client_refuses_a_pushed_cipher_it_does_not_allow() -> None:
    # A server pushing outside our list is refused (check_session_cipher()); simulated with a
    # server whose fallback the client never offered.
    pair = Pair(client_ciphers=("AES-128-CBC",), server_ciphers=("AES-256-GCM",),
                client_settings={"peer_info": OLD_PEER_INFO},
                server_settings={"data_ciphers_fallback": "AES-256-CBC"})
    pair.run(15)
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed and "negotiated cipher not allowed - AES-256-CBC not in AES-128-CBC" in (
        closed[0].reason), closed
