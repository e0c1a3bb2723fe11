"""Compression framing (tunnel/protocol/compress.py) against payloads framed by stock 2.6.14."""

from __future__ import annotations

import ipaddress

import lz4.block
import pytest

from core import Buffer
from tests.protocol.harness import Pair, ip_packet
from tests.protocol.vectors_comp import FRAMED
from tunnel.protocol.compress import NON_STUB_KINDS, Compression
from tunnel.protocol.events import SessionClosed
from tunnel.protocol.verdicts import DROPPED, TO_TUN

KINDS = sorted(FRAMED)
# Decompressing stock's LZO payload needs python-lzo; the other kinds need nothing extra.
KIND_PARAMS = [pytest.param(k, marks=pytest.mark.lzo) if k == "lzo" else k for k in KINDS]
LIMIT = 1600


def buffer_with(data: bytes) -> Buffer:
    buf = Buffer(2048)
    buf.reset(128)
    buf.append(data)
    return buf


def is_echo(packet: bytes) -> bool:
    """An IPv4 ICMP packet of 628 bytes: the `ping -s 600` echo that stock framed."""
    return packet[0] == 0x45 and int.from_bytes(packet[2:4], "big") == len(packet) == 628


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_stock_framed_payloads_unframe_to_the_ip_packet(kind: str) -> None:
    option, echo, reply = FRAMED[kind]
    comp = Compression(kind, decompress=True, limit=LIMIT)
    for framed in (echo, reply):
        buf = buffer_with(framed)
        assert comp.unframe(buf), (option, comp.malformed, comp.refused)
        packet = bytes(buf.data)
        assert is_echo(packet), packet[:8].hex()
        assert packet.endswith(b"abcd")  # the -p pattern survived
    compressed = kind in NON_STUB_KINDS
    assert comp.decompressed == (2 if compressed else 0)
    assert len(echo) < 100 if compressed else len(echo) >= 628  # stock did compress


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_we_frame_as_stock_does_when_not_compressing(kind: str) -> None:
    """Our uncompressed framing of the same IP packet is byte for byte stock's stub form."""
    _, echo, _ = FRAMED[kind]
    packet = _stock_packet(kind)
    comp = Compression(kind, decompress=True, limit=LIMIT)
    buf = buffer_with(packet)
    comp.frame(buf)
    ours = bytes(buf.data)
    if kind in ("lzo", "stub"):
        assert ours == b"\xfa" + packet
    elif kind in ("lz4", "swap-stub"):
        assert ours == b"\xfb" + packet[1:] + packet[:1]
    else:
        assert ours == packet  # v2: no byte unless the payload starts with 0x50
    if kind not in NON_STUB_KINDS:
        assert ours == echo  # the very bytes stock sent
    assert comp.unframe(buf) and bytes(buf.data) == packet


def _stock_packet(kind: str) -> bytes:
    comp = Compression(kind, decompress=True, limit=LIMIT)
    buf = buffer_with(FRAMED[kind][1])
    assert comp.unframe(buf)
    return bytes(buf.data)


@pytest.mark.parametrize("kind", ["stub-v2", "lz4-v2"])
def test_v2_escapes_a_payload_that_starts_with_0x50(kind: str) -> None:
    comp = Compression(kind, decompress=False, limit=LIMIT)
    buf = buffer_with(b"\x50hello")
    comp.frame(buf)
    assert bytes(buf.data) == b"\x50\x00\x50hello"
    assert comp.unframe(buf) and bytes(buf.data) == b"\x50hello"


@pytest.mark.parametrize("kind", sorted(NON_STUB_KINDS))
def test_compressed_packets_are_dropped_and_counted_when_not_allowed(kind: str) -> None:
    _, echo, _ = FRAMED[kind]
    comp = Compression(kind, decompress=False, limit=LIMIT)  # allow-compression no/stub-only
    assert not comp.unframe(buffer_with(echo))
    assert (comp.refused, comp.decompressed) == (1, 0)


@pytest.mark.parametrize(("stub", "compressed"), [
    ("stub", "lzo"), ("swap-stub", "lz4"), ("stub-v2", "lz4-v2"),
])
def test_a_stub_refuses_compressed_packets_like_stock(stub: str, compressed: str) -> None:
    comp = Compression(stub, decompress=True, limit=LIMIT)
    assert not comp.unframe(buffer_with(FRAMED[compressed][1]))
    assert comp.refused == 1


def test_garbage_and_bombs_are_dropped_never_raised() -> None:
    for kind in KINDS:
        comp = Compression(kind, decompress=True, limit=LIMIT)
        for data in (b"\x00", b"\x50", b"\x50\x07xx", b"\x66\xff\xff\xff", b"\x69garbage",
                     b"\x50\x01\xff\xff\xff\xff"):
            comp.unframe(buffer_with(data))
    bomb = lz4.block.compress(bytes(20000), store_size=False)  # decompresses past the limit
    comp = Compression("lz4-v2", decompress=True, limit=LIMIT)
    assert not comp.unframe(buffer_with(b"\x50\x01" + bomb))
    assert comp.malformed == 1


# -- in a session: configured and pushed --------------------------------------------------


def _flows(pair: Pair, payload: bytes = b"x" * 300) -> None:
    up = pair.client_sends(payload)
    assert up is not None and pair.to_server(up) == TO_TUN
    assert pair.to_server_tun[-1].endswith(payload)
    down = pair.server_sends(payload)
    assert down is not None and pair.to_client(down) == TO_TUN


@pytest.mark.parametrize("kind", KINDS)
def test_both_sides_configured(kind: str) -> None:
    settings = {"compression": kind,
                "allow_compression": "asym" if kind in NON_STUB_KINDS else "stub-only"}
    pair = Pair(client_settings=settings, server_settings=settings)
    pair.connect()
    _flows(pair)
    pair.run(12)  # keepalive pings are framed too
    assert pair.client.session.closed is None


def test_a_stock_compressed_packet_reaches_the_tun_in_a_session() -> None:
    settings = {"compression": "lz4-v2", "allow_compression": "asym"}
    pair = Pair(client_settings=settings, server_settings=settings)
    pair.connect()
    vip = pair.client_vip
    packet = ip_packet(vip, ipaddress.IPv4Address("10.8.0.1"), b"y" * 500)
    framed = b"\x50\x01" + lz4.block.compress(packet, store_size=False)
    session = pair.client.session
    key = session.send_key
    assert key is not None
    buf = pair.pool.acquire()
    buf.append(framed)
    key.seal(buf, session.tx_peer_id)  # what a compressing peer puts on the wire
    datagram = bytes(buf.data)
    pair.pool.release(buf)
    assert pair.to_server(datagram) == TO_TUN
    assert pair.to_server_tun[-1] == packet


def test_pushed_stub_is_applied_and_pushed_lz4_refused_by_a_stub_only_client() -> None:
    pair = Pair(server_settings={"compression": "stub-v2"})
    pair.server.settings.push = (*pair.server.settings.push, "compress stub-v2")
    pair.connect()
    comp = pair.client.session.comp
    assert comp is not None and comp.kind == "stub-v2"
    _flows(pair)

    refused = Pair(server_settings={"compression": "lz4-v2", "allow_compression": "asym"})
    refused.server.settings.push = (*refused.server.settings.push, "compress lz4-v2")
    refused.run(10)
    closed = [e for e in refused.client_events if isinstance(e, SessionClosed)]
    assert closed and "server pushed compression settings that are not allowed" in (
        closed[0].reason)


def test_pushed_lz4_v2_is_applied_by_a_client_that_allows_it() -> None:
    pair = Pair(server_settings={"compression": "lz4-v2", "allow_compression": "asym"},
                client_settings={"allow_compression": "asym"})
    pair.server.settings.push = (*pair.server.settings.push, "compress lz4-v2")
    pair.connect()
    comp = pair.client.session.comp
    assert comp is not None and comp.kind == "lz4-v2" and comp.decompress
    _flows(pair)


def test_mismatched_framing_drops_and_counts() -> None:
    pair = Pair(client_settings={"compression": "swap-stub"})
    pair.connect()
    up = pair.client_sends(b"z" * 50)
    assert up is not None and pair.to_server(up) in (TO_TUN, DROPPED)
