"""MSS clamping: the option is lowered, the checksum stays valid, everything else untouched."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnel.protocol.geometry import data_frame, outer_overhead
from tunnel.protocol.mssfix import clamp_mss, mss_for


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _tcp_v4(
    mss: int | None, *, flags: int = 0x02, payload: bytes = b"", nops: int = 2
) -> bytearray:
    options = b""
    if mss is not None:
        options = b"\x01" * nops + struct.pack("!BBH", 2, 4, mss) + b"\x04\x02"
        options += b"\x00" * (-len(options) % 4)
    tcp_len = 20 + len(options)
    tcp = bytearray(
        struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, (tcp_len // 4) << 4, flags, 64240, 0, 0)
    )
    tcp += options + payload
    src, dst = bytes([10, 8, 0, 2]), bytes([10, 8, 0, 1])
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    struct.pack_into("!H", tcp, 16, _checksum(pseudo + bytes(tcp)))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
    return bytearray(ip) + tcp


def _tcp_checksum_ok(packet: bytes) -> bool:
    ihl = (packet[0] & 0x0F) * 4
    tcp = packet[ihl:]
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    return _checksum(pseudo + tcp) == 0


def test_default_mssfix_gives_openvpn_values() -> None:
    # mssfix 1492, outer IPv4+UDP, P_DATA_V2 + AEAD: stock logs mss_fix:1400.
    frame = data_frame("AES-256-GCM")
    assert frame.overhead == 24
    outer = outer_overhead("UDPv4")
    assert outer == 28
    assert mss_for(1492, frame, outer_overhead=outer, inner_ipv6=False) == 1400
    assert mss_for(1492, frame, outer_overhead=outer, inner_ipv6=True) == 1380


@pytest.mark.parametrize("nops", [0, 1, 2, 3])
def test_syn_mss_is_lowered_and_checksum_stays_valid(nops: int) -> None:
    # An odd number of NOPs puts the MSS value across two words of the checksum sum.
    packet = _tcp_v4(1460, nops=nops)
    assert _tcp_checksum_ok(bytes(packet))
    assert clamp_mss(memoryview(packet), 1400, 1380)
    assert struct.unpack_from("!H", packet, 20 + 20 + nops + 2)[0] == 1400
    assert _tcp_checksum_ok(bytes(packet))


def test_smaller_mss_non_syn_and_non_tcp_are_untouched() -> None:
    for packet in (_tcp_v4(1200), _tcp_v4(1460, flags=0x10), _tcp_v4(None)):
        before = bytes(packet)
        assert not clamp_mss(memoryview(packet), 1400, 1380)
        assert bytes(packet) == before
    udp = _tcp_v4(1460)
    udp[9] = 17
    assert not clamp_mss(memoryview(udp), 1400, 1380)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_never_raises(data: bytes) -> None:
    for first in (0x45, 0x60, data[:1]):
        packet = bytearray(first if isinstance(first, bytes) else bytes([first])) + data
        clamp_mss(memoryview(packet), 1400, 1380)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=536, max_value=65535),
    st.binary(max_size=64),
    st.integers(min_value=0, max_value=5),
)
def test_checksum_valid_after_clamping_any_mss(mss: int, payload: bytes, nops: int) -> None:
    packet = _tcp_v4(mss, payload=payload, nops=nops)
    changed = clamp_mss(memoryview(packet), 1400, 1380)
    assert changed == (mss > 1400)
    assert _tcp_checksum_ok(bytes(packet))
