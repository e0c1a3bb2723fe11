"""TunCoalescer: what it merges, what it leaves alone, and that the kernel's segmentation of a
merged frame gives back the original segments (checked with a model of that segmentation)."""

from __future__ import annotations

import struct

from core import Buffer
from tunnel.io.offload import (
    GSO_NONE,
    GSO_TCPV4,
    GSO_UDP_L4,
    VNET_F_NEEDS_CSUM,
    VNET_HDR,
    VNET_HDR_SIZE,
    TunCoalescer,
)

SRC = bytes([10, 0, 0, 1])
DST = bytes([10, 0, 0, 2])
ACK = 0x10
PSH = 0x08
TS_OPTS = bytes([1, 1, 8, 10]) + struct.pack("!II", 1000, 2000)  # NOP NOP timestamps


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp4(
    seq: int, payload: bytes, *, flags: int = ACK, sport: int = 5000, dport: int = 5201,
    ack: int = 77, opts: bytes = TS_OPTS, ident: int = 1, src: bytes = SRC,
) -> bytes:
    thl = 20 + len(opts)
    seq &= 0xFFFFFFFF
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (thl // 4) << 4, flags, 500, 0, 0)
    tcp += opts
    pseudo = src + DST + struct.pack("!BBH", 0, 6, thl + len(payload))
    csum = checksum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    total = 20 + thl + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, 64, 6, 0, src, DST)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp + payload


def udp4(payload: bytes, *, sport: int = 1, ident: int = 9) -> bytes:
    total = 28 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, 64, 17, 0, SRC, DST)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", sport, 2, 8 + len(payload), 0)
    pseudo = SRC + DST + struct.pack("!BBH", 0, 17, 8 + len(payload))
    csum = checksum(pseudo + udp + payload) or 0xFFFF
    return ip + udp[:6] + struct.pack("!H", csum) + payload


def segment(frame: bytes) -> list[bytes]:
    """What the kernel makes of a frame: the packet as is, or a GSO packet cut into segments
    with their lengths, sequence numbers and checksums completed (IP ids counted up)."""
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(frame)
    packet = frame[VNET_HDR_SIZE:]
    if gso_type == GSO_NONE:
        assert flags == 0
        return [packet]
    if gso_type == GSO_UDP_L4:
        return segment_udp(packet, flags, hdr_len, gso_size, csum_start, csum_offset)
    assert gso_type == GSO_TCPV4 and flags == VNET_F_NEEDS_CSUM
    assert (csum_start, csum_offset) == (20, 16)
    assert checksum(packet[:20]) == 0, "IPv4 header checksum"
    (total,) = struct.unpack_from("!H", packet, 2)
    assert total == len(packet)
    # The TCP checksum field must hold the pseudo-header sum (not complemented).
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 6, total - 20)
    field = struct.unpack_from("!H", packet, 36)[0]
    assert field == (~checksum(pseudo) & 0xFFFF)
    header, data = packet[:hdr_len], packet[hdr_len:]
    (seq,) = struct.unpack_from("!I", header, 24)
    (ident,) = struct.unpack_from("!H", header, 4)
    out = []
    for i, start in enumerate(range(0, len(data), gso_size)):
        chunk = data[start : start + gso_size]
        last = start + gso_size >= len(data)
        ip = bytearray(header[:20])
        struct.pack_into("!HH", ip, 2, hdr_len + len(chunk), (ident + i) & 0xFFFF)
        struct.pack_into("!H", ip, 10, 0)
        struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
        tcp = bytearray(header[20:])
        struct.pack_into("!I", tcp, 4, (seq + start) & 0xFFFFFFFF)
        if not last:
            tcp[13] &= ~PSH & 0xFF
        struct.pack_into("!H", tcp, 16, 0)
        pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, 6, len(tcp) + len(chunk))
        struct.pack_into("!H", tcp, 16, checksum(pseudo + bytes(tcp) + chunk))
        out.append(bytes(ip) + bytes(tcp) + chunk)
    return out


def segment_udp(
    packet: bytes, flags: int, hdr_len: int, gso_size: int, csum_start: int, csum_offset: int
) -> list[bytes]:
    assert flags == VNET_F_NEEDS_CSUM and (hdr_len, csum_start, csum_offset) == (28, 20, 6)
    assert checksum(packet[:20]) == 0, "IPv4 header checksum"
    (total,) = struct.unpack_from("!H", packet, 2)
    (ulen,) = struct.unpack_from("!H", packet, 24)
    assert total == len(packet) and ulen == total - 20
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 17, ulen)
    assert struct.unpack_from("!H", packet, 26)[0] == (~checksum(pseudo) & 0xFFFF)
    (ident,) = struct.unpack_from("!H", packet, 4)
    data = packet[28:]
    out = []
    for i, start in enumerate(range(0, len(data), gso_size)):
        chunk = data[start : start + gso_size]
        sport = struct.unpack_from("!H", packet, 20)[0]
        out.append(udp4(chunk, sport=sport, ident=(ident + i) & 0xFFFF))
    return out


class Sink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def __call__(self, frame: memoryview) -> bool:
        self.frames.append(bytes(frame))
        return True


def feed(packets: list[bytes], *, udp: bool = True) -> list[bytes]:
    sink = Sink()
    coalescer = TunCoalescer(sink, udp=udp)
    for packet in packets:
        buf = Buffer(64 + len(packet))
        buf.reset(40)
        buf.append(packet)
        coalescer.write(buf)
    coalescer.flush()
    assert coalescer.packets == len(packets)
    return sink.frames


def stream(count: int, mss: int = 1388, seq: int = 1000, **kw: object) -> list[bytes]:
    return [
        tcp4(seq + i * mss, bytes([i % 251]) * mss, ident=1 + i, **kw)  # type: ignore[arg-type]
        for i in range(count)
    ]


def resegmented(frames: list[bytes]) -> list[bytes]:
    return [seg for frame in frames for seg in segment(frame)]


def test_a_run_of_segments_becomes_one_gso_frame_that_segments_back() -> None:
    packets = stream(10)
    frames = feed(packets)
    assert len(frames) == 1
    flags, gso_type, hdr_len, gso_size, _, _ = VNET_HDR.unpack_from(frames[0])
    assert (flags, gso_type, hdr_len, gso_size) == (VNET_F_NEEDS_CSUM, GSO_TCPV4, 52, 1388)
    assert resegmented(frames) == packets


def test_short_last_segment_and_psh_end_the_run() -> None:
    packets = [*stream(4), tcp4(1000 + 4 * 1388, b"x" * 100, flags=ACK | PSH, ident=5)]
    packets += [tcp4(1000 + 4 * 1388 + 100, b"y" * 1388, ident=6)]
    frames = feed(packets)
    assert len(frames) == 2  # 5 merged (PSH on the last), then the next one on its own
    assert resegmented(frames) == packets
    assert VNET_HDR.unpack_from(frames[1])[1] == GSO_NONE


def test_gaps_other_flows_and_other_protocols_keep_order_and_are_not_merged() -> None:
    a = stream(3)
    gap = tcp4(1000 + 10 * 1388, b"g" * 1388, ident=9)  # not the next sequence number
    other = tcp4(1000 + 3 * 1388, b"o" * 1388, sport=6000, ident=4)
    udp = udp4(b"u" * 64)
    packets = [*a, gap, other, udp, *stream(2, seq=1000 + 11 * 1388)]
    frames = feed(packets)
    assert resegmented(frames) == packets
    kinds = [VNET_HDR.unpack_from(f)[1] for f in frames]
    assert kinds == [GSO_TCPV4, GSO_NONE, GSO_NONE, GSO_NONE, GSO_TCPV4]


def test_differing_options_ack_or_flags_are_not_merged() -> None:
    base = stream(1)[0]
    later_ts = tcp4(1000 + 1388, b"\1" * 1388, opts=bytes([1, 1, 8, 10]) + struct.pack(
        "!II", 1001, 2000), ident=2)
    other_ack = tcp4(1000 + 2 * 1388, b"\2" * 1388, ack=78, ident=3)
    syn = tcp4(1000 + 3 * 1388, b"", flags=0x02, ident=4)
    packets = [base, later_ts, other_ack, syn]
    frames = feed(packets)
    assert len(frames) == 4
    assert all(VNET_HDR.unpack_from(f)[1] == GSO_NONE for f in frames)
    assert resegmented(frames) == packets


def test_a_run_stops_below_the_ip_length_limit() -> None:
    packets = stream(60)  # 60 * 1388 bytes of payload: more than one IPv4 packet can carry
    frames = feed(packets)
    assert len(frames) == 2
    for frame in frames:
        assert len(frame) - VNET_HDR_SIZE <= 0xFFFF
    assert resegmented(frames) == packets


def test_sequence_numbers_wrap() -> None:
    packets = stream(5, seq=0xFFFFFFFF - 2000)
    assert resegmented(feed(packets)) == packets


def test_udp_datagrams_of_one_flow_merge_and_split_back_at_their_boundaries() -> None:
    flow = [udp4(bytes([i]) * 64, ident=10 + i) for i in range(70)] + [udp4(b"end", ident=80)]
    other = udp4(b"o" * 64, sport=7, ident=90)
    packets = [*flow[:5], other, *flow[5:]]
    frames = feed(packets)
    kinds = [VNET_HDR.unpack_from(f)[1] for f in frames]
    # 5, the other flow alone, then 64 (the segment limit) and 2 of 64 + the short one.
    assert kinds == [GSO_UDP_L4, GSO_NONE, GSO_UDP_L4, GSO_UDP_L4]
    assert resegmented(frames) == packets


def test_udp_merging_can_be_off_and_turns_itself_off_when_refused() -> None:
    packets = [udp4(bytes([i]) * 100, ident=i) for i in range(5)]
    frames = feed(packets, udp=False)
    assert [VNET_HDR.unpack_from(f)[1] for f in frames] == [GSO_NONE] * 5
    refused: list[bytes] = []

    def refuse_gso(frame: memoryview) -> bool:
        refused.append(bytes(frame))
        return bool(VNET_HDR.unpack_from(frame)[1] == GSO_NONE)

    coalescer = TunCoalescer(refuse_gso, udp=True)
    for _ in range(2):
        for packet in packets:
            buf = Buffer(64 + len(packet))
            buf.reset(40)
            buf.append(packet)
            coalescer.write(buf)
        coalescer.flush()
        assert coalescer.udp is False  # the first merged run was refused (and lost)
    assert coalescer.dropped == 5
    assert [VNET_HDR.unpack_from(f)[1] for f in refused[1:]] == [GSO_NONE] * 5
