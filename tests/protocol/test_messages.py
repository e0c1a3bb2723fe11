"""Control-channel texts: OCC string, peer-info, NCP, PUSH_REPLY, framing (wire doc 6, 10)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnel.protocol.errors import ProtocolError
from tunnel.protocol.messages import (
    IV_PROTO_AUTH_FAIL_TEMP,
    IV_PROTO_AUTH_PENDING_KW,
    IV_PROTO_CC_EXIT_NOTIFY,
    IV_PROTO_DATA_V2,
    IV_PROTO_DYN_TLS_CRYPT,
    IV_PROTO_REQUEST_PUSH,
    IV_PROTO_TLS_KEY_EXPORT,
    OUR_IV_PROTO,
    ControlMessageReader,
    PushOptions,
    build_peer_info,
    build_push_reply,
    classify_control_message,
    encode_control_message,
    negotiate_cipher,
    options_string,
    parse_peer_info,
    parse_push_reply,
    peer_info_int,
)

# --- options string --------------------------------------------------------------------------


def test_stock_options_strings() -> None:
    assert options_string(role="client") == (
        "V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,"
        "key-method 2,tls-client"
    )
    assert options_string(role="server") == (
        "V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,"
        "key-method 2,tls-server"
    )
    assert len(options_string(role="server")) + 1 == 101  # the 101-byte KM2 field


def test_options_string_variants_and_errors() -> None:
    text = options_string(role="server", proto="UDPv6", tun_mtu=1400, link_mtu=1449)
    assert ",proto UDPv6," in text and ",tun-mtu 1400," in text and ",link-mtu 1449," in text
    with pytest.raises(ValueError):
        options_string(role="peer")
    with pytest.raises(ValueError):
        options_string(role="client", proto="TCPv4")


# --- IV_PROTO and peer-info ------------------------------------------------------------------


def test_our_iv_proto() -> None:
    assert (
        OUR_IV_PROTO
        == 406
        == (
            IV_PROTO_DATA_V2
            | IV_PROTO_REQUEST_PUSH
            | IV_PROTO_AUTH_PENDING_KW
            | IV_PROTO_CC_EXIT_NOTIFY
            | IV_PROTO_AUTH_FAIL_TEMP
        )
    )
    assert not OUR_IV_PROTO & (IV_PROTO_TLS_KEY_EXPORT | IV_PROTO_DYN_TLS_CRYPT | 1)


def test_build_peer_info_stock_shape() -> None:
    text = build_peer_info(ciphers=["AES-256-GCM", "CHACHA20-POLY1305"], version="0.1.0")
    assert text == (
        "IV_VER=0.1.0\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\n"
        "IV_CIPHERS=AES-256-GCM:CHACHA20-POLY1305\nIV_PROTO=406\n"
    )
    assert "IV_NCP" not in text


def test_build_peer_info_ncp2_only_with_both_gcm() -> None:
    text = build_peer_info(
        ciphers=["aes-256-gcm", "AES-128-GCM"], version="x", tun_mtu_max=1500, platform="mac"
    )
    info = parse_peer_info(text)
    assert info["IV_NCP"] == "2"
    assert info["IV_CIPHERS"] == "AES-256-GCM:AES-128-GCM"
    assert info["IV_MTU"] == "1500" and info["IV_PLAT"] == "mac"
    assert text.endswith("\n") and all(line for line in text.split("\n")[:-1])


def test_build_peer_info_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        build_peer_info(ciphers=[], version="1")
    with pytest.raises(ValueError):
        build_peer_info(ciphers=["AES-256-GCM:BF-CBC"], version="1")
    with pytest.raises(ValueError):
        build_peer_info(ciphers=["AES-256-GCM"], version="1\nIV_PROTO=990")


def test_parse_peer_info_stock_client() -> None:
    info = parse_peer_info(
        "IV_VER=2.6.14\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\n"
        "IV_CIPHERS=AES-256-GCM:CHACHA20-POLY1305\nIV_PROTO=990\n"
        "IV_LZO_STUB=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n"
    )
    assert info["IV_PROTO"] == "990"
    assert peer_info_int(info, "IV_PROTO") == 990
    assert info["IV_COMP_STUBv2"] == "1"
    assert len(info) == 9


def test_parse_peer_info_is_tolerant() -> None:
    info = parse_peer_info(
        "garbage\n=novalue\nBAD NAME=1\nIV_A=1\r\nIV_A=2\nIV_B=x\x01y\nIV_EMPTY=\nUV_X=a=b"
    )
    assert info == {"IV_A": "1", "IV_B": "x_y", "IV_EMPTY": "", "UV_X": "a=b"}
    assert parse_peer_info("") == {}


def test_peer_info_int_like_sscanf() -> None:
    assert peer_info_int({"IV_PROTO": "406junk"}, "IV_PROTO") == 406
    assert peer_info_int({"IV_PROTO": "junk"}, "IV_PROTO") == 0
    assert peer_info_int({}, "IV_NCP") == 0


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=300))
def test_parse_peer_info_never_raises(text: str) -> None:
    for name, value in parse_peer_info(text).items():
        assert name and "=" not in name and "\n" not in value


# --- NCP -------------------------------------------------------------------------------------

SERVER_CIPHERS = ["AES-256-GCM", "CHACHA20-POLY1305"]


def test_ncp_first_server_cipher_the_client_lists() -> None:
    info = {"IV_CIPHERS": "CHACHA20-POLY1305:AES-256-GCM"}
    assert negotiate_cipher(SERVER_CIPHERS, info) == "AES-256-GCM"
    assert negotiate_cipher(["chacha20-poly1305", "AES-256-GCM"], info) == "CHACHA20-POLY1305"
    assert negotiate_cipher(SERVER_CIPHERS, {"IV_CIPHERS": "aes-256-gcm"}) == "AES-256-GCM"


def test_ncp_no_shared_cipher_ignores_fallback() -> None:
    info = {"IV_CIPHERS": "AES-128-GCM"}
    assert negotiate_cipher(SERVER_CIPHERS, info, fallback="AES-256-GCM") is None


def test_ncp_legacy_iv_ncp() -> None:
    assert negotiate_cipher(["CHACHA20-POLY1305", "AES-128-GCM"], {"IV_NCP": "2"}) == "AES-128-GCM"
    assert negotiate_cipher(["CHACHA20-POLY1305"], {"IV_NCP": "2"}) is None


def test_ncp_fallback_only_without_any_ncp_info() -> None:
    assert negotiate_cipher(SERVER_CIPHERS, {}) is None
    assert (
        negotiate_cipher(SERVER_CIPHERS, {"IV_NCP": "1"}, fallback="aes-256-gcm") == "AES-256-GCM"
    )


# --- PUSH_REPLY parsing ----------------------------------------------------------------------

# The verified strings of wire doc 10.1.
STOCK_TO_STOCK = (
    "PUSH_REPLY,route-gateway 10.98.0.1,topology subnet,ping 10,ping-restart 60,"
    "ifconfig 10.98.0.2 255.255.255.0,peer-id 0,cipher AES-256-GCM,"
    "protocol-flags cc-exit tls-ekm dyn-tls-crypt,tun-mtu 1500"
)
STOCK_TO_PROBE = (
    "PUSH_REPLY,route-gateway 10.98.0.1,topology subnet,ping 10,ping-restart 60,"
    "ifconfig 10.98.0.2 255.255.255.0,peer-id 0,cipher AES-256-GCM,protocol-flags cc-exit,"
    "tun-mtu 1500"
)
MINIMAL = (
    "PUSH_REPLY,route-gateway 10.8.0.1,topology subnet,ping 10,ping-restart 60,"
    "ifconfig 10.8.0.2 255.255.255.0,peer-id 0,cipher AES-256-GCM"
)


def test_stock_reply_to_our_client() -> None:
    opts, more = parse_push_reply(STOCK_TO_PROBE)
    assert not more
    assert opts.route_gateway == "10.98.0.1"
    assert opts.topology == "subnet"
    assert (opts.ping, opts.ping_restart) == (10, 60)
    assert opts.ifconfig == ("10.98.0.2", "255.255.255.0")
    assert opts.peer_id == 0
    assert opts.cipher == "AES-256-GCM"
    assert opts.protocol_flags == {"cc-exit"}
    assert opts.tun_mtu == 1500
    assert opts.unknown == [] and opts.routes == [] and not opts.redirect_gateway


def test_minimal_reply() -> None:
    opts, more = parse_push_reply(MINIMAL)
    assert not more
    assert opts.ifconfig == ("10.8.0.2", "255.255.255.0")
    assert opts.protocol_flags == set() and opts.tun_mtu is None


def test_ekm_flags_are_refused() -> None:
    with pytest.raises(ProtocolError, match="protocol-flags"):
        parse_push_reply(STOCK_TO_STOCK)
    with pytest.raises(ProtocolError, match="key-derivation"):
        parse_push_reply("PUSH_REPLY,key-derivation tls-ekm")


@pytest.mark.parametrize(
    ("option", "kind"),
    [
        ("comp-lzo", "lzo"),
        ("comp-lzo no", "stub"),
        ("comp-lzo yes", "lzo"),
        ("compress", "swap-stub"),
        ("compress lz4-v2", "lz4-v2"),
        ("compress stub-v2", "stub-v2"),
    ],
)
def test_pushed_compression_is_read(option: str, kind: str) -> None:
    opts, _ = parse_push_reply(f"PUSH_REPLY,topology subnet,{option}")
    assert opts.compression == kind


def test_bad_pushed_compression_is_refused() -> None:
    with pytest.raises(ProtocolError, match="bad comp option"):
        parse_push_reply("PUSH_REPLY,compress zstd")


def test_routes_dns_ipv6_and_extras() -> None:
    opts, _ = parse_push_reply(
        "PUSH_REPLY,route 10.1.0.0 255.255.0.0,route 192.168.5.0 255.255.255.0 10.8.0.1 5,"
        "route 172.16.0.1,route net_gateway 255.255.255.255 vpn_gateway,"
        "route-ipv6 2001:db8:1::/48,route-ipv6 2001:db8:2::/64 2001:db8::1 10,"
        "ifconfig-ipv6 2001:db8::2/64 2001:db8::1,dhcp-option DNS 10.8.0.1,"
        "dhcp-option DNS 2001:db8::53,dhcp-option DOMAIN example.org,"
        "redirect-gateway def1 bypass-dhcp,"
        "auth-token SECRETTOKEN,tun-ipv6,block-outside-dns,route-gateway dhcp"
    )
    assert opts.routes == [
        ("10.1.0.0", "255.255.0.0", None),
        ("192.168.5.0", "255.255.255.0", "10.8.0.1"),
        ("172.16.0.1", "255.255.255.255", None),
        ("net_gateway", "255.255.255.255", "vpn_gateway"),
    ]
    assert opts.routes_ipv6 == ["2001:db8:1::/48", "2001:db8:2::/64"]
    assert opts.ifconfig_ipv6 == ("2001:db8::2/64", "2001:db8::1")
    assert opts.dns == ["10.8.0.1", "2001:db8::53"]
    assert opts.redirect_gateway and opts.redirect_gateway_flags == {"def1", "bypass-dhcp"}
    assert opts.unknown == ["dhcp-option DOMAIN example.org", "block-outside-dns"]
    assert opts.route_gateway == "dhcp"
    assert opts.auth_token == "SECRETTOKEN"
    assert "SECRETTOKEN" not in repr(opts)


@pytest.mark.parametrize(
    "option, name",
    [
        ("ifconfig 10.8.0.300 255.255.255.0", "ifconfig"),
        ("ifconfig 10.8.0.2", "ifconfig"),
        ("ifconfig host.example 255.255.255.0", "ifconfig"),
        ("ifconfig-ipv6 2001:db8::2/48 2001:db8::1", "ifconfig-ipv6"),
        ("ifconfig-ipv6 10.0.0.1/64 2001:db8::1", "ifconfig-ipv6"),
        ("route 10.0.0.0 255.255.0", "route"),
        ("route 10.0.0.0 255.255.0.0 gw.example", "route"),
        ("route 10.0.0.0 255.255.0.0 10.8.0.1 -1", "route"),
        ("route 1 2 3 4 5", "route"),
        ("route-ipv6 2001:db8::/129", "route-ipv6"),
        ("route-gateway nowhere", "route-gateway"),
        ("topology star", "topology"),
        ("peer-id 16777216", "peer-id"),
        ("peer-id -1", "peer-id"),
        ("peer-id 0x10", "peer-id"),
        ("cipher AES-256-GCM extra", "cipher"),
        ("cipher AES/GCM", "cipher"),
        ("ping ten", "ping"),
        ("ping +5", "ping"),
        ("ping-restart 99999999999", "ping-restart"),
        ("tun-mtu 40", "tun-mtu"),
        ("tun-mtu 70000", "tun-mtu"),
        ("dhcp-option DNS 10.8.0", "dhcp-option"),
        ("push-continuation 3", "push-continuation"),
        ("auth-token", "auth-token"),
    ],
)
def test_bad_values_name_the_option(option: str, name: str) -> None:
    with pytest.raises(ProtocolError, match=f"'{name}'"):
        parse_push_reply(f"PUSH_REPLY,topology subnet,{option}")


def test_not_a_push_reply() -> None:
    for text in ("PUSH_REQUEST", "PUSH_REPLYX,ping 1", "AUTH_FAILED", ""):
        with pytest.raises(ProtocolError):
            parse_push_reply(text)


def test_empty_reply_and_empty_items() -> None:
    opts, more = parse_push_reply("PUSH_REPLY")
    assert opts == PushOptions() and not more
    opts, _ = parse_push_reply("PUSH_REPLY,,ping 5, ,")
    assert opts.ping == 5 and opts.unknown == []


def test_continuation_accumulates_in_place_and_atomically() -> None:
    first, more = parse_push_reply("PUSH_REPLY,route 10.1.0.0 255.255.0.0,push-continuation 2")
    assert more
    second, more = parse_push_reply(
        "PUSH_REPLY,route 10.2.0.0 255.255.0.0,ping 10,push-continuation 1", first
    )
    assert not more and second is first
    assert [r[0] for r in first.routes] == ["10.1.0.0", "10.2.0.0"]
    with pytest.raises(ProtocolError):
        parse_push_reply("PUSH_REPLY,route 10.3.0.0 255.255.0.0,ping x", first)
    assert len(first.routes) == 2 and first.ping == 10  # untouched by the failed part


# --- PUSH_REPLY building ---------------------------------------------------------------------


def test_build_single_part() -> None:
    items = [
        "route-gateway 10.8.0.1",
        "topology subnet",
        "ping 10",
        "ping-restart 60",
        "ifconfig 10.8.0.2 255.255.255.0",
        "peer-id 0",
        "cipher AES-256-GCM",
    ]
    assert build_push_reply(items) == [MINIMAL]
    assert build_push_reply([]) == ["PUSH_REPLY"]


def test_build_splits_with_continuations() -> None:
    items = [f"route 10.{i // 256}.{i % 256}.0 255.255.255.0" for i in range(200)]
    parts = build_push_reply(items)
    assert len(parts) > 1
    for part in parts[:-1]:
        assert part.endswith(",push-continuation 2")
    assert parts[-1].endswith(",push-continuation 1")
    assert all(len(p.encode()) < 1024 for p in parts)
    merged: PushOptions | None = None
    for i, part in enumerate(parts):
        merged, more = parse_push_reply(part, merged)
        assert more == (i < len(parts) - 1)
    assert merged is not None
    assert [r[0] for r in merged.routes] == [item.split()[1] for item in items]


def test_build_boundary_exactly_fits() -> None:
    # "PUSH_REPLY," is 11 bytes; an option of 1012 bytes makes 1023 < 1024: one message.
    option = "x" * 1012
    assert build_push_reply([option]) == ["PUSH_REPLY," + option]
    with pytest.raises(ValueError, match="too long"):
        build_push_reply(["x" * 1013])


def test_build_rejects_bad_options() -> None:
    for bad in ("route 1,2", "", "  ", "ping\n1", "push-continuation 2"):
        with pytest.raises(ValueError):
            build_push_reply([bad])


@settings(deadline=None, max_examples=60)
@given(
    routes=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=120),
    max_part=st.integers(200, 2048),
)
def test_build_parse_round_trip(routes: list[tuple[int, int]], max_part: int) -> None:
    items = [f"route 10.{a}.{b}.0 255.255.255.0" for a, b in routes] + ["ping 7"]
    parts = build_push_reply(items, max_part=max_part)
    merged: PushOptions | None = None
    for part in parts:
        assert len(part.encode()) < max_part
        merged, _ = parse_push_reply(part, merged)
    assert merged is not None and merged.ping == 7
    assert [r[0] for r in merged.routes] == [f"10.{a}.{b}.0" for a, b in routes]


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=200))
def test_parse_push_reply_random_text_only_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        parse_push_reply("PUSH_REPLY," + text)
    with contextlib.suppress(ProtocolError):
        parse_push_reply(text)


@settings(deadline=None, max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "ifconfig",
                    "ifconfig-ipv6",
                    "route",
                    "route-ipv6",
                    "route-gateway",
                    "topology",
                    "peer-id",
                    "cipher",
                    "ping",
                    "ping-restart",
                    "tun-mtu",
                    "protocol-flags",
                    "dhcp-option",
                    "redirect-gateway",
                    "auth-token",
                    "push-continuation",
                    "x-unknown",
                ]
            ),
            st.lists(
                st.sampled_from(
                    [
                        "",
                        "0",
                        "1",
                        "-1",
                        "64",
                        "99999999999",
                        "10.0.0.1",
                        "255.255.0.0",
                        "::1",
                        "2001:db8::/64",
                        "::1/200",
                        "DNS",
                        "vpn_gateway",
                        "subnet",
                        "cc-exit",
                        "a/b",
                        "1.2.3",
                    ]
                ),
                max_size=5,
            ),
        ),
        max_size=8,
    )
)
def test_parse_push_reply_known_options_random_args(options: list[tuple[str, list[str]]]) -> None:
    message = "PUSH_REPLY," + ",".join(" ".join([name, *args]) for name, args in options)
    with contextlib.suppress(ProtocolError):
        parse_push_reply(message)


# --- control messages ------------------------------------------------------------------------


def test_reader_splits_and_reassembles() -> None:
    r = ControlMessageReader()
    assert r.feed(b"PUSH_REQ") == []
    assert r.pending == 8
    assert r.feed(b"UEST\0PUSH_REPLY,ping 1\r\n\0AUTH") == ["PUSH_REQUEST", "PUSH_REPLY,ping 1"]
    assert r.feed(b"_FAILED\0") == ["AUTH_FAILED"]
    assert r.pending == 0 and r.invalid == 0


def test_reader_drops_invalid_and_empty() -> None:
    r = ControlMessageReader()
    out = r.feed(b"\0\r\n\0BAD\x01MSG\0IN\nNER\0INFO,ok\0\xff\xfe\0")
    # U+FFFD from undecodable bytes is printable; only control characters are refused.
    assert out == ["INFO,ok", "\ufffd\ufffd"]
    assert r.invalid == 2


def test_reader_bounds_its_buffer() -> None:
    r = ControlMessageReader(max_pending=100)
    r.feed(b"x" * 100)
    with pytest.raises(ProtocolError):
        r.feed(b"y")
    assert r.pending == 0
    assert r.feed(b"EXIT\0") == ["EXIT"]


@settings(deadline=None, max_examples=200)
@given(st.lists(st.binary(max_size=100), max_size=10))
def test_reader_random_input(chunks: list[bytes]) -> None:
    r = ControlMessageReader(max_pending=300)
    for chunk in chunks:
        try:
            messages = r.feed(chunk)
        except ProtocolError:
            continue
        for m in messages:
            assert m and m.isprintable() and "\0" not in m


def test_encode_control_message() -> None:
    assert encode_control_message("PUSH_REQUEST") == b"PUSH_REQUEST\0"
    r = ControlMessageReader()
    assert r.feed(encode_control_message("INFO,héllo")) == ["INFO,héllo"]
    for bad in ("", "a\0b", "line\nbreak", "x" * 2048):
        with pytest.raises(ValueError):
            encode_control_message(bad)
    assert len(encode_control_message("x" * 2047)) == 2048


@pytest.mark.parametrize(
    "text, expected",
    [
        ("PUSH_REQUEST", ("PUSH_REQUEST", "")),
        ("PUSH_REPLY,ping 10,ping-restart 60", ("PUSH_REPLY", "ping 10,ping-restart 60")),
        ("AUTH_FAILED", ("AUTH_FAILED", "")),
        ("AUTH_FAILED,TEMP[backoff 5]:try later", ("AUTH_FAILED", "TEMP[backoff 5]:try later")),
        ("AUTH_PENDING,timeout 30", ("AUTH_PENDING", "timeout 30")),
        ("RESTART,[N]server going down", ("RESTART", "[N]server going down")),
        ("HALT,bye", ("HALT", "bye")),
        ("EXIT", ("EXIT", "")),
        ("INFO,OPEN_URL:https://x", ("INFO", "OPEN_URL:https://x")),
        ("INFO_PRE,WEB_AUTH::u", ("INFO_PRE", "WEB_AUTH::u")),
        ("CR_RESPONSE,YWJj", ("CR_RESPONSE", "YWJj")),
        ("push_request", ("PUSH_REQUEST", "")),
        ("Something,else", ("Something", "else")),
    ],
)
def test_classify(text: str, expected: tuple[str, str]) -> None:
    assert classify_control_message(text) == expected
