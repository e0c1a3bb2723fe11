"""Control-packet codec: the verified byte vectors of OPENVPN-WIRE.md 2.1, every rejection rule,
and property tests (random bytes never raise anything but ProtocolError; build/parse round trip).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import BoundsError, Buffer
from tunnel.protocol.codec import (
    CONTROL_HEADER_MAX,
    ControlPacket,
    build_control,
    control_frame_builder,
    control_overhead,
    join_op,
    parse_control,
    read_control,
    skip_to_payload,
    split_op,
    write_control,
)
from tunnel.protocol.constants import CONTROL_OPCODES, MAX_ACKS_PARSE, Opcode
from tunnel.protocol.errors import ProtocolError

CLIENT_SID = bytes.fromhex("fa99b04cc87dcc2e")
SERVER_SID = bytes.fromhex("391dc630e20be3ab")

# Captured from a stock 2.6.14 exchange (OPENVPN-WIRE.md 2.1, [verified]).
CLIENT_RESET = bytes.fromhex("38 fa99b04cc87dcc2e 00 00000000")
SERVER_RESET = bytes.fromhex("40 391dc630e20be3ab 01 00000000 fa99b04cc87dcc2e 00000000")
DEDICATED_ACK = bytes.fromhex("28 fa99b04cc87dcc2e 02 00000001 00000000 391dc630e20be3ab")
CLIENT_HELLO_HEAD = bytes.fromhex("20 fa99b04cc87dcc2e 01 00000000 391dc630e20be3ab 00000001")

VECTORS = [
    (
        CLIENT_RESET,
        ControlPacket(Opcode.P_CONTROL_HARD_RESET_CLIENT_V2, 0, CLIENT_SID, packet_id=0),
    ),
    (
        SERVER_RESET,
        ControlPacket(
            Opcode.P_CONTROL_HARD_RESET_SERVER_V2,
            0,
            SERVER_SID,
            acks=(0,),
            remote_session_id=CLIENT_SID,
            packet_id=0,
        ),
    ),
    (
        DEDICATED_ACK,
        ControlPacket(Opcode.P_ACK_V1, 0, CLIENT_SID, acks=(1, 0), remote_session_id=SERVER_SID),
    ),
    (
        CLIENT_HELLO_HEAD + b"\x16\x03\x01\x01\x10\x01",
        ControlPacket(
            Opcode.P_CONTROL_V1,
            0,
            CLIENT_SID,
            acks=(0,),
            remote_session_id=SERVER_SID,
            packet_id=1,
            payload=b"\x16\x03\x01\x01\x10\x01",
        ),
    ),
]


@pytest.mark.parametrize(("wire", "pkt"), VECTORS)
def test_verified_vectors_parse(wire: bytes, pkt: ControlPacket) -> None:
    assert parse_control(wire) == pkt


@pytest.mark.parametrize(("wire", "pkt"), VECTORS)
def test_verified_vectors_build(wire: bytes, pkt: ControlPacket) -> None:
    assert build_control(pkt) == wire


def test_vector_lengths() -> None:
    assert len(CLIENT_RESET) == 14
    assert len(SERVER_RESET) == 26
    assert len(DEDICATED_ACK) == 26


def test_parse_accepts_bytearray_and_memoryview() -> None:
    expected = parse_control(SERVER_RESET)
    assert parse_control(bytearray(SERVER_RESET)) == expected
    assert parse_control(memoryview(b"xx" + SERVER_RESET)[2:]) == expected


def test_payload_is_a_copy() -> None:
    buf = bytearray(CLIENT_HELLO_HEAD + b"abc")
    pkt = parse_control(buf)
    buf[-1] = 0
    assert pkt.payload == b"abc"
    assert type(pkt.payload) is bytes


def test_key_id_in_first_byte() -> None:
    wire = bytes([join_op(Opcode.P_CONTROL_SOFT_RESET_V1, 5)]) + CLIENT_RESET[1:]
    pkt = parse_control(wire)
    assert (pkt.opcode, pkt.key_id) == (Opcode.P_CONTROL_SOFT_RESET_V1, 5)
    assert build_control(pkt) == wire


def test_split_and_join_op() -> None:
    assert split_op(0x38) == (7, 0)
    assert split_op(0x1F) == (3, 7)
    assert join_op(Opcode.P_DATA_V2, 0) == 0x48
    for byte in range(256):
        assert join_op(*split_op(byte)) == byte
    with pytest.raises(ValueError):
        join_op(32, 0)
    with pytest.raises(ValueError):
        join_op(4, 8)


def test_control_overhead() -> None:
    assert control_overhead(0) == 14  # a reset without ACKs
    assert control_overhead(1) == 26
    assert control_overhead(4) == 38  # 1222 - 38 = 1184 TLS bytes per packet over IPv4
    assert control_overhead(8) == 54
    with pytest.raises(ValueError):
        control_overhead(-1)


# --- rejections -------------------------------------------------------------------------------


def _with_first_byte(byte: int, rest: bytes = CLIENT_RESET[1:]) -> bytes:
    return bytes([byte]) + rest


REJECTED = [
        (b"", "too short"),
        (CLIENT_RESET[:9], "too short"),
        (_with_first_byte(0x08), "unsupported key-method 1"),
        (_with_first_byte(0x10), "unsupported key-method 1"),
        (_with_first_byte(0x00), "unknown opcode 0"),
        (_with_first_byte(12 << 3), "unknown opcode 12"),
        (_with_first_byte(31 << 3 | 7), "unknown opcode 31"),
        (_with_first_byte(0x30), "data-channel opcode 6"),
        (_with_first_byte(0x48), "data-channel opcode 9"),
        (b"\x38" + bytes(8) + b"\x00\x00\x00\x00\x00", "zero session id"),
        (CLIENT_RESET[:10], "without a message packet id"),
        (CLIENT_RESET[:13], "without a message packet id"),
        (SERVER_RESET[:12], "truncated ACK block"),
        (SERVER_RESET[:20], "without the remote session id"),
        (SERVER_RESET[:14] + bytes(8) + b"\x00" * 4, "zero remote session id"),
        (b"\x28" + CLIENT_SID + b"\x00", "P_ACK_V1 without ACK ids"),
        (DEDICATED_ACK + b"\x00", "1 trailing bytes after P_ACK_V1"),
        (b"\x20" + CLIENT_SID + b"\x09" + bytes(36) + SERVER_SID + bytes(4), "9 ACK ids"),
        (b"\x20" + CLIENT_SID + b"\xff" + bytes(2000), "255 ACK ids"),
]


@pytest.mark.parametrize(("wire", "message"), REJECTED)
def test_rejections(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_control(wire)


def test_eight_acks_accepted() -> None:
    wire = b"\x28" + CLIENT_SID + b"\x08" + bytes(range(32)) + SERVER_SID
    pkt = parse_control(wire)
    assert len(pkt.acks) == MAX_ACKS_PARSE
    assert build_control(pkt) == wire


def test_v3_and_wkc_opcodes_parse_generically() -> None:
    for op in (Opcode.P_CONTROL_HARD_RESET_CLIENT_V3, Opcode.P_CONTROL_WKC_V1):
        wire = _with_first_byte(join_op(op, 0), CLIENT_RESET[1:] + b"wkc")
        assert parse_control(wire).payload == b"wkc"


@pytest.mark.parametrize(
    "pkt",
    [
        ControlPacket(Opcode.P_DATA_V2, 0, CLIENT_SID, packet_id=0),
        ControlPacket(Opcode.P_CONTROL_HARD_RESET_CLIENT_V1, 0, CLIENT_SID, packet_id=0),
        ControlPacket(Opcode.P_CONTROL_V1, 8, CLIENT_SID, packet_id=0),
        ControlPacket(Opcode.P_CONTROL_V1, 0, CLIENT_SID[:7], packet_id=0),
        ControlPacket(Opcode.P_CONTROL_V1, 0, bytes(8), packet_id=0),
        ControlPacket(Opcode.P_CONTROL_V1, 0, CLIENT_SID),
        ControlPacket(Opcode.P_CONTROL_V1, 0, CLIENT_SID, packet_id=1 << 32),
        ControlPacket(Opcode.P_CONTROL_V1, 0, CLIENT_SID, packet_id=-1),
        ControlPacket(Opcode.P_CONTROL_V1, 0, CLIENT_SID, acks=(1,), packet_id=0),
        ControlPacket(
            Opcode.P_CONTROL_V1, 0, CLIENT_SID, remote_session_id=SERVER_SID, packet_id=0
        ),
        ControlPacket(
            Opcode.P_CONTROL_V1, 0, CLIENT_SID, acks=(1,), remote_session_id=bytes(8), packet_id=0
        ),
        ControlPacket(
            Opcode.P_CONTROL_V1, 0, CLIENT_SID, acks=tuple(range(9)), remote_session_id=SERVER_SID
        ),
        ControlPacket(Opcode.P_ACK_V1, 0, CLIENT_SID),
        ControlPacket(Opcode.P_ACK_V1, 0, CLIENT_SID, (1,), SERVER_SID, packet_id=3),
        ControlPacket(Opcode.P_ACK_V1, 0, CLIENT_SID, (1,), SERVER_SID, payload=b"x"),
    ],
)
def test_build_rejects_misuse(pkt: ControlPacket) -> None:
    with pytest.raises(ValueError):
        build_control(pkt)


def test_build_accepts_plain_int_opcode() -> None:
    pkt = ControlPacket(5, 0, CLIENT_SID, acks=(1, 0), remote_session_id=SERVER_SID)  # type: ignore[arg-type]
    assert build_control(pkt) == DEDICATED_ACK


# --- properties -------------------------------------------------------------------------------

sids = st.binary(min_size=8, max_size=8).filter(lambda b: b != bytes(8))
pids = st.integers(min_value=0, max_value=0xFFFFFFFF)


@st.composite
def control_packets(draw: st.DrawFn) -> ControlPacket:
    opcode = draw(st.sampled_from(sorted(CONTROL_OPCODES)))
    acks = tuple(draw(st.lists(pids, min_size=1 if opcode == Opcode.P_ACK_V1 else 0, max_size=8)))
    is_ack = opcode == Opcode.P_ACK_V1
    return ControlPacket(
        opcode=opcode,
        key_id=draw(st.integers(0, 7)),
        session_id=draw(sids),
        acks=acks,
        remote_session_id=draw(sids) if acks else None,
        packet_id=None if is_ack else draw(pids),
        payload=b"" if is_ack else draw(st.binary(max_size=64)),
    )


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=80))
def test_parse_random_bytes_raises_only_protocol_error(data: bytes) -> None:
    try:
        pkt = parse_control(data)
    except ProtocolError:
        return
    # Whatever parses is canonical: it re-encodes to the same bytes.
    assert build_control(pkt) == data


@settings(deadline=None, max_examples=300)
@given(control_packets(), st.binary(max_size=60))
def test_parse_mutated_valid_packets(pkt: ControlPacket, noise: bytes) -> None:
    wire = bytearray(build_control(pkt))
    for i, b in enumerate(noise[: len(wire)]):
        wire[(i * 7) % len(wire)] ^= b
    cut = len(noise) % (len(wire) + 1)
    for candidate in (bytes(wire), bytes(wire[:cut])):
        try:
            parsed = parse_control(candidate)
        except ProtocolError:
            continue
        assert build_control(parsed) == candidate


@settings(deadline=None, max_examples=300)
@given(control_packets())
def test_build_parse_round_trip(pkt: ControlPacket) -> None:
    wire = build_control(pkt)
    assert len(wire) == (
        control_overhead(len(pkt.acks)) + len(pkt.payload)
        if pkt.opcode != Opcode.P_ACK_V1
        else control_overhead(len(pkt.acks)) - 4
    )
    assert parse_control(wire) == pkt


# --- the Buffer form: typed reads and prepends into headroom -------------------------------------


def _buffer_holding(wire: bytes, headroom: int = CONTROL_HEADER_MAX) -> Buffer:
    buf = Buffer(headroom + len(wire) + 16)
    buf.reset(headroom)
    buf.append(wire)
    return buf


@pytest.mark.parametrize(("wire", "pkt"), VECTORS)
def test_read_control_consumes_the_packet(wire: bytes, pkt: ControlPacket) -> None:
    buf = _buffer_holding(wire)
    assert read_control(buf) == pkt
    assert len(buf) == 0 and buf.offset == CONTROL_HEADER_MAX + len(wire)


@pytest.mark.parametrize(("wire", "message"), REJECTED)
def test_read_control_rejects_and_leaves_the_buffer_as_it_was(wire: bytes, message: str) -> None:
    """A Buffer bound (truncated ACK block, missing sid or pid) or a bad field is a
    ProtocolError; offset, length and bytes are what they were before the parse."""
    buf = _buffer_holding(wire)
    before = (buf.offset, len(buf), bytes(buf.data))
    with pytest.raises(ProtocolError, match=message):
        read_control(buf)
    assert (buf.offset, len(buf), bytes(buf.data)) == before


@pytest.mark.parametrize("cut", range(len(SERVER_RESET)))
def test_every_truncation_is_a_protocol_error(cut: int) -> None:
    buf = _buffer_holding(SERVER_RESET[:cut])
    with pytest.raises(ProtocolError):
        read_control(buf)
    assert bytes(buf.data) == SERVER_RESET[:cut]


def test_announced_acks_beyond_the_datagram_are_a_bound_not_a_read_past_the_end() -> None:
    # 8 ids announced, 2 present, then bytes that lie in the block but outside the contents:
    # the Buffer refuses to read them although the memory is there.
    wire = b"\x20" + CLIENT_SID + b"\x08" + bytes(8)
    buf = Buffer(64)
    buf.append(wire + bytes(60 - len(wire)))
    buf.truncate(len(wire))
    with pytest.raises(ProtocolError, match="truncated ACK block: 8 ids announced, 18 bytes"):
        read_control(buf)
    assert len(buf) == len(wire)


@pytest.mark.parametrize(("wire", "pkt"), VECTORS)
def test_write_control_prepends_the_header_into_headroom(wire: bytes, pkt: ControlPacket) -> None:
    buf = _buffer_holding(pkt.payload)
    end = buf.offset + len(buf)
    write_control(buf, pkt.opcode, pkt.key_id, pkt.session_id, pkt.acks,
                  pkt.remote_session_id, pkt.packet_id)
    assert bytes(buf.data) == wire
    assert buf.offset + len(buf) == end  # the payload did not move


def test_write_control_without_enough_headroom_changes_nothing() -> None:
    pkt = VECTORS[3][1]
    need = len(VECTORS[3][0]) - len(pkt.payload)
    buf = _buffer_holding(pkt.payload, headroom=need - 1)
    before = (buf.offset, len(buf), bytes(buf.data))
    with pytest.raises(BoundsError, match="needs"):
        write_control(buf, pkt.opcode, pkt.key_id, pkt.session_id, pkt.acks,
                      pkt.remote_session_id, pkt.packet_id)
    assert (buf.offset, len(buf), bytes(buf.data)) == before


def test_write_control_misuse_changes_nothing() -> None:
    buf = _buffer_holding(b"payload")
    before = (buf.offset, len(buf), bytes(buf.data))
    for args in (
        (Opcode.P_ACK_V1, 0, CLIENT_SID, (1,), SERVER_SID, None),  # an ACK with a payload
        (Opcode.P_CONTROL_V1, 0, CLIENT_SID, (1, 1 << 32), SERVER_SID, 0),  # ACK id too big
        (Opcode.P_CONTROL_V1, 0, CLIENT_SID, (), None, -1),
    ):
        with pytest.raises(ValueError):
            write_control(buf, *args)  # type: ignore[arg-type]
        assert (buf.offset, len(buf), bytes(buf.data)) == before


def test_control_frame_registers_the_header_headroom() -> None:
    frame = control_frame_builder().finalize()
    assert [r.name for r in frame.registrations] == ["control packet header"]
    assert frame.headroom >= CONTROL_HEADER_MAX == control_overhead(MAX_ACKS_PARSE) == 54
    assert frame.payload_size == 1250  # tls-mtu


def test_skip_to_payload_finds_the_message_pid() -> None:
    buf = _buffer_holding(CLIENT_HELLO_HEAD + b"tls")
    assert skip_to_payload(buf) == 1 and bytes(buf.data) == b"tls"
    buf = _buffer_holding(CLIENT_RESET)
    assert skip_to_payload(buf) == 0 and len(buf) == 0
    with pytest.raises(BoundsError):
        skip_to_payload(_buffer_holding(SERVER_RESET[:20]))


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=80), st.integers(0, 16))
def test_read_control_random_bytes(data: bytes, headroom: int) -> None:
    buf = _buffer_holding(data, headroom)
    try:
        pkt = read_control(buf)
    except ProtocolError:
        assert bytes(buf.data) == data and buf.offset == headroom
        return
    assert build_control(pkt) == data and len(buf) == 0
