"""TCP MSS clamping (OpenVPN's `--mssfix`, mss.c), in place on the packet's bytes.

A full-size TCP segment inside the tunnel plus the tunnel's overhead would exceed the path MTU
and be fragmented by the outer IP layer. OpenVPN therefore rewrites the MSS option of TCP SYNs
passing through, in both directions, so that both ends choose segments that fit. The default
`mssfix 1492` counts the outer IP/UDP headers ("mtu" mode): over IPv4 with AES-GCM and
P_DATA_V2 that is 1492 - 28 - 24 - 40 = 1400 for IPv4 inside, 20 less for IPv6 inside. With a
CBC cipher stock rounds the room for the encrypted part down to whole blocks and keeps one byte
for the padding (mss.c: adjust_payload_max_cbc): AES-256-CBC + SHA1 gives 1379, not 1492 - 28
- 60 - 40 = 1364 (a full padding block assumed).

`clamp_mss` is on the data path: the common case (not a TCP SYN) is rejected after a few byte
reads; only SYNs are parsed further.
"""

from __future__ import annotations

import socket
from typing import Final, Literal

from core import Frame
from tunnel.protocol.cbc import CBC_PADDING
from tunnel.protocol.cfb import CFB_HMAC_IV
from tunnel.protocol.checksum import adjust
from tunnel.protocol.compress import COMPRESSION, COMPRESSION_V2
from tunnel.protocol.datachannel import PACKET_ID_SIZE
from tunnel.protocol.geometry import IPV4_HEADER, IPV6_HEADER, TCP_HEADER

_TCP: Final = socket.IPPROTO_TCP
_SYN = 0x02
_OPT_END = 0
_OPT_NOP = 1
_OPT_MSS = 2

MssfixMode = Literal["mtu", "payload", "fixed"]
_LONG_PACKET_ID = 8  # CFB/OFB: the long form (id + time)


def mss_for(
    mssfix: int,
    frame: Frame,
    *,
    outer_overhead: int,
    inner_ipv6: bool,
    mode: MssfixMode = "mtu",
) -> int:
    """The MSS keeping a packet within `mssfix` bytes (mss.c: frame_calculate_mssfix).

    `frame` is the data frame of what was negotiated (`geometry.data_frame`). `mode` says what
    `mssfix` counts: "mtu" the whole outer IP datagram (`outer_overhead`, the kernel's IP +
    UDP/TCP headers, on top of the frame), "payload" the UDP/TCP payload (`mssfix N` without a
    flag), "fixed" the inner IP packet alone. As stock: the packet's headers come off the
    target, a CBC cipher rounds what is left down to whole blocks less the one padding byte
    always there, then the bytes inside the encryption before the IP packet (the framing's
    byte, CBC's packet-id) and the inner IPv4 (or IPv6) and TCP headers without options.
    """
    inner_headers = (IPV6_HEADER if inner_ipv6 else IPV4_HEADER) + TCP_HEADER
    if mode == "fixed":
        return mssfix - inner_headers
    header, payload, block = _stock_overheads(frame)
    target = mssfix - header
    if mode == "mtu":
        target -= outer_overhead
    if block:
        target = target // block * block - 1
    return target - payload - inner_headers


def _stock_overheads(frame: Frame) -> tuple[int, int, int]:
    """The frame's overhead as stock splits it for the MSS: (protocol header, payload
    overhead, CBC block or 0). mtu.c: frame_calculate_protocol_header_size (link framing,
    opcode/peer-id, packet-id unless CBC, tag or IV + HMAC) and
    frame_calculate_payload_overhead (one byte for a v1 framing, none for v2, CBC's
    packet-id: it is encrypted with the payload); the padding is the block rounding."""
    header, payload, block = frame.overhead, 0, 0
    for reg in frame.registrations:
        if reg.name == CBC_PADDING:
            block = reg.expansion
            header -= block
        elif reg.name == COMPRESSION:
            header -= reg.headroom + reg.expansion
            payload += 1
        elif reg.name == COMPRESSION_V2:
            header -= reg.headroom
        elif reg.name == CFB_HMAC_IV:
            header += _LONG_PACKET_ID - PACKET_ID_SIZE  # stock counts 8, in the IV on the wire
    if block:
        header -= PACKET_ID_SIZE
        payload += PACKET_ID_SIZE
    return header, payload, block


def clamp_mss(packet: memoryview, mss_v4: int, mss_v6: int) -> bool:
    """Lower the MSS option of a TCP SYN to the limit; True if the packet was changed."""
    size = len(packet)
    if size < 40:
        return False
    first = packet[0]
    if first == 0x45 and (packet[9] != _TCP or not packet[33] & _SYN):
        return False  # the common case, IPv4 without options that is not a TCP SYN: one look
    version = first >> 4
    if version == 4:
        if packet[9] != _TCP or packet[6] & 0x1F or packet[7]:
            return False  # not TCP, or a fragment (only the first has the header; skip all)
        tcp = (packet[0] & 0x0F) * 4
        limit = mss_v4
    elif version == 6:
        if packet[6] != _TCP:
            return False  # extension headers are not walked, as in mss.c
        tcp = 40
        limit = mss_v6
    else:
        return False
    if size < tcp + 20 or not packet[tcp + 13] & _SYN:
        return False
    return _clamp_tcp_option(packet, tcp, limit)


def _clamp_tcp_option(packet: memoryview, tcp: int, limit: int) -> bool:
    header_len = (packet[tcp + 12] >> 4) * 4
    end = min(tcp + header_len, len(packet))
    at = tcp + 20
    while at < end:
        kind = packet[at]
        if kind == _OPT_END:
            return False
        if kind == _OPT_NOP:
            at += 1
            continue
        if at + 1 >= end:
            return False
        length = packet[at + 1]
        if length < 2 or at + length > end:
            return False  # malformed options: leave the packet alone
        if kind == _OPT_MSS and length == 4:
            old = (packet[at + 2] << 8) | packet[at + 3]
            if old <= limit:
                return False
            packet[at + 2] = limit >> 8
            packet[at + 3] = limit & 0xFF
            if (at + 2 - tcp) & 1:
                # After an odd number of NOPs the value straddles two 16-bit words of the
                # checksum sum, so it contributes with its bytes swapped.
                old, limit = _swap16(old), _swap16(limit)
            _adjust_checksum(packet, tcp + 16, old, limit)
            return True
        at += length
    return False


def _adjust_checksum(packet: memoryview, at: int, old: int, new: int) -> None:
    """Incremental update of the TCP checksum for one changed 16-bit word."""
    checksum = adjust((packet[at] << 8) | packet[at + 1], old, new)
    packet[at] = checksum >> 8
    packet[at + 1] = checksum & 0xFF


def _swap16(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)
