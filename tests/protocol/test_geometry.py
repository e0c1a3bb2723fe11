"""The link geometry: outer headers, the negotiated data frame, and the MSS and control limits
derived from them (one place: tunnel/protocol/geometry.py + mssfix.mss_for)."""

from __future__ import annotations

import pytest

from tunnel.io.stream import register_stream_framing
from tunnel.protocol.cbc import CBC_CIPHERS, HMAC_DIGESTS, cbc_overhead
from tunnel.protocol.compress import COMPRESSION_KINDS, Compression
from tunnel.protocol.datachannel import DATA_V2_OVERHEAD, SUPPORTED_CIPHERS
from tunnel.protocol.datacipher import data_overhead
from tunnel.protocol.geometry import data_frame, framing_overhead, outer_overhead
from tunnel.protocol.mssfix import mss_for

from .harness import Pair, tls_settings


@pytest.mark.parametrize(
    ("proto", "size"),
    [("UDPv4", 28), ("UDPv6", 48), ("TCPv4_CLIENT", 40), ("TCPv4_SERVER", 40),
     ("TCPv6_CLIENT", 60), ("TCPv6_SERVER", 60)],
)
def test_outer_headers_per_link(proto: str, size: int) -> None:
    assert outer_overhead(proto) == size


def test_the_data_frame_of_one_cipher_is_its_wire_overhead() -> None:
    for cipher in SUPPORTED_CIPHERS:
        assert data_frame(cipher).overhead == data_overhead(cipher) == DATA_V2_OVERHEAD
    for cipher in CBC_CIPHERS:
        for digest in HMAC_DIGESTS:
            frame = data_frame(cipher, auth=digest)
            assert frame.overhead == data_overhead(cipher, digest) == cbc_overhead(digest)
    assert data_frame(None).overhead == DATA_V2_OVERHEAD  # before negotiation: an AEAD's


def test_compression_and_link_framing_are_in_the_data_frame() -> None:
    for kind in COMPRESSION_KINDS:
        frame = data_frame("AES-256-GCM", compression=kind)
        comp = Compression(kind, decompress=False, limit=1500)
        assert frame.overhead == DATA_V2_OVERHEAD + comp.overhead
    tcp = data_frame("AES-256-GCM", link_framing=register_stream_framing)
    assert tcp.overhead == DATA_V2_OVERHEAD + 2
    assert framing_overhead(register_stream_framing) == 2
    assert framing_overhead(None) == 0


def _before(mssfix: int, mode: str, proto: str, tunnel: int, inner_v6: bool) -> int:
    """The formula the code used before the frame carried it (build.session_mssfix +
    runtime._outer_overhead + the old mss_for), for one cipher without compression."""
    tcp = proto.startswith("TCP")
    outer = ((60 if proto.startswith("TCPv6") else 40) + 2) if tcp else (
        48 if proto == "UDPv6" else 28)
    link = (48 if "v6" in proto else 28) + (14 if tcp else 0)
    setting = {"mtu": mssfix, "payload": mssfix + link, "fixed": mssfix + link + tunnel}[mode]
    return setting - outer - tunnel - ((40 if inner_v6 else 20) + 20)


@pytest.mark.parametrize("proto", ["UDPv4", "UDPv6", "TCPv4_CLIENT", "TCPv6_SERVER"])
@pytest.mark.parametrize("mode", ["mtu", "payload", "fixed"])
@pytest.mark.parametrize(("cipher", "auth"),
                         [("AES-256-GCM", "SHA1"), ("CHACHA20-POLY1305", "SHA1")])
def test_mss_is_what_it_was_and_what_stock_computes(
    proto: str, mode: str, cipher: str, auth: str
) -> None:
    link_framing = register_stream_framing if proto.startswith("TCP") else None
    frame = data_frame(cipher, auth=auth, link_framing=link_framing)
    tunnel = data_overhead(cipher, auth)
    for v6 in (False, True):
        mss = mss_for(1450, frame, outer_overhead=outer_overhead(proto), inner_ipv6=v6,
                      mode=mode)  # type: ignore[arg-type]
        before = _before(1450, mode, proto, tunnel, v6)
        if mode == "payload" and link_framing is not None:
            # Stock counts TCP's length prefix in the payload (mtu.c:
            # frame_calculate_protocol_header_size); the old constants forgot it.
            assert mss == before - 2
        else:
            assert mss == before
        if mode == "fixed":
            assert mss == 1450 - (60 if v6 else 40)  # mss.c: mssfix - (20 + 20) (+20 for v6)


# What stock 2.6.14 computes for the same config on both sides: "Data Channel MTU parms
# [ mss_fix:N" at verb 4 (client and server alike), two stock peers in a netns, proto/mssfix/
# data-ciphers/auth/comp-lzo/compress as given (the IPv4 value; stock takes 20 off for IPv6).
STOCK_MSS = [
    # cipher, auth, proto, mssfix, mode, compression, mss_fix
    ("AES-256-CBC", "SHA1", "UDPv4", 1492, "mtu", None, 1379),
    ("AES-128-CBC", "SHA256", "UDPv4", 1492, "mtu", None, 1363),
    ("AES-256-CBC", "SHA512", "UDPv4", 1492, "mtu", None, 1331),
    ("AES-256-CBC", "SHA1", "UDPv4", 1450, "mtu", None, 1331),
    ("AES-256-CBC", "SHA1", "TCPv4_CLIENT", 1492, "mtu", None, 1363),
    ("AES-256-CBC", "SHA1", "UDPv6", 1492, "mtu", None, 1347),
    ("AES-256-CBC", "SHA1", "UDPv4", 1400, "payload", None, 1315),
    ("AES-256-CBC", "SHA1", "UDPv4", 1400, "fixed", None, 1360),
    ("AES-256-CBC", "SHA1", "UDPv4", 1492, "mtu", "stub", 1378),  # comp-lzo no
    ("AES-256-CBC", "SHA1", "UDPv4", 1492, "mtu", "stub-v2", 1379),  # compress stub-v2
    ("AES-256-GCM", "SHA1", "UDPv4", 1492, "mtu", "stub", 1399),
    ("AES-256-GCM", "SHA1", "UDPv4", 1492, "mtu", "stub-v2", 1400),
]


@pytest.mark.parametrize(("cipher", "auth", "proto", "mssfix", "mode", "compression", "mss"),
                         STOCK_MSS)
def test_mss_is_what_the_stock_binary_computes(cipher: str, auth: str, proto: str,
                                               mssfix: int, mode: str,
                                               compression: str | None, mss: int) -> None:
    """CBC: the room left for the encrypted part is rounded down to whole blocks less the one
    padding byte (mss.c: adjust_payload_max_cbc), the packet-id counted inside it; a v2
    framing adds nothing (mtu.c: frame_calculate_payload_overhead)."""
    link_framing = register_stream_framing if proto.startswith("TCP") else None
    frame = data_frame(cipher, auth=auth, compression=compression, link_framing=link_framing)
    for v6, expected in ((False, mss), (True, mss - 20)):
        got = mss_for(mssfix, frame, outer_overhead=outer_overhead(proto), inner_ipv6=v6,
                      mode=mode)  # type: ignore[arg-type]
        assert got == expected, (v6, frame.describe())


def test_a_cbc_session_clamps_as_stock() -> None:
    pair = Pair(client_ciphers=("AES-256-CBC",), server_ciphers=("AES-256-CBC",))
    pair.connect()
    session = pair.client.session
    assert session is not None and session.cipher == "AES-256-CBC"
    assert (session._mss_v4, session._mss_v6) == (1379, 1359)  # stock: mss_fix:1379
    [server_side] = pair.server.sessions
    assert (server_side._mss_v4, server_side._mss_v6) == (1379, 1359)


def test_a_session_clamps_to_the_negotiated_frame() -> None:
    pair = Pair()
    pair.connect()
    session = pair.client.session
    assert session is not None and session.send_key is not None
    assert (session._mss_v4, session._mss_v6) == (1400, 1380)  # stock: mss_fix:1400


def test_tcp_sessions_count_the_length_prefix_once() -> None:
    pair = Pair(client_settings={"proto": "TCPv4_CLIENT"},
                server_settings={"proto": "TCPv4_SERVER"})
    pair.connect()
    client = pair.client.session
    assert client is not None
    assert client.settings.outer_overhead == 40
    assert client._mss_v4 == 1492 - 40 - 2 - 24 - 40


def test_control_datagram_limit_is_unchanged() -> None:
    from tunnel.runtime import session_settings

    tls = tls_settings("client")
    limits = {proto: session_settings(is_client=True, tls=tls, proto=proto,
                                      dyn_tls_crypt=False).max_control_datagram
              for proto in ("UDPv4", "UDPv6", "TCPv4_CLIENT")}
    assert limits == {"UDPv4": 1222, "UDPv6": 1202, "TCPv4_CLIENT": 1208}
