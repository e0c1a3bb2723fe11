"""Control-channel packet codec, plain mode (no tls-auth / tls-crypt): OPENVPN-WIRE.md 2.1.

```
P_CONTROL_*: op|kid (1) | own sid (8) | n (1) | acks (4*n) | [remote sid (8) if n] | pid (4) | data
P_ACK_V1:    op|kid (1) | own sid (8) | n (1) | acks (4*n) | [remote sid (8) if n]
```

Sources: ``ssl_pkt.c: write_control_auth()``, ``reliable.c: reliable_ack_write()`` /
``reliable_ack_parse()`` / ``reliable_ack_read()``, ``ssl.c: tls_pre_decrypt()``.

Memory is the seed's `Buffer` model, as in OpenVPN: ``read_control(buf)`` consumes the packet
with typed reads (every bound checked by the `Buffer` before it moves, a short read is a
``ProtocolError``), and ``write_control(buf, ...)`` puts the header in front of the payload
already in ``buf`` with prepends into its headroom, which the control frame registers
(``register_control_packet``: `CONTROL_HEADER_MAX` bytes); the wrap then prepends its own header
the same way. ``parse_control(bytes)`` / ``build_control(pkt) -> bytes`` are the same codec
for callers that hold plain bytes (tests, tools).

Parsing is canonical: every datagram ``parse_control`` accepts is re-encoded byte for byte by
``build_control``. Where the stock code is more lenient we are stricter only for input no
stock peer ever produces (documented at each check), so interop is unaffected.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from core import BoundsError, Buffer, BytesLike, Frame, FrameBuilder
from tunnel.protocol.constants import (
    CONTROL_OPCODES,
    KEY_ID_MASK,
    MAX_ACKS_PARSE,
    MAX_MSG_PID,
    OPCODE_SHIFT,
    PACKET_ID_LEN,
    SESSION_ID_LEN,
    TLS_MTU,
    Opcode,
    join_op,
    split_op,
)
from tunnel.protocol.errors import ProtocolError

__all__ = [
    "CONTROL_HEADER_MAX",
    "ControlPacket",
    "build_control",
    "control_frame_builder",
    "control_overhead",
    "join_op",
    "parse_control",
    "plain_control_frame",
    "read_control",
    "register_control_packet",
    "skip_to_payload",
    "split_op",
    "write_control",
]

_ZERO_SID = bytes(SESSION_ID_LEN)
# op|kid + own sid + ack count: the smallest prefix any control packet has.
_FIXED_HEAD = 1 + SESSION_ID_LEN + 1
_ACK_OPCODE = int(Opcode.P_ACK_V1)
# Opcode by the top 5 bits of the first byte, for the opcodes 2.6 accepts (an IntEnum call
# per packet costs more than this lookup).
_OPCODES: dict[int, Opcode] = {int(op): op for op in CONTROL_OPCODES}


def control_overhead(n_acks: int) -> int:
    """Header bytes of a non-ACK control packet carrying ``n_acks`` ACK ids.

    ``ssl.c: calc_control_channel_frame_overhead()`` in plain mode: opcode, own sid, ACK block
    (``reliable.h: ACK_SIZE(n)``), message pid.
    """
    if n_acks < 0:
        raise ValueError("n_acks must be >= 0")
    return _FIXED_HEAD + PACKET_ID_LEN * n_acks + (SESSION_ID_LEN if n_acks else 0) + PACKET_ID_LEN


CONTROL_HEADER_MAX = control_overhead(MAX_ACKS_PARSE)
"""The most ``write_control`` prepends (8 ACK ids and a message pid): 54 bytes."""

# Header layouts by ACK count and message pid (present or not): op|kid, own sid, n, the ids,
# the remote sid (with ids only), the pid; and the ACK blocks alone. Network byte order.
_HEADERS: tuple[tuple[struct.Struct, struct.Struct], ...] = tuple(
    tuple(  # type: ignore[misc]
        struct.Struct(f"!B{SESSION_ID_LEN}sB" + (f"{n}I{SESSION_ID_LEN}s" if n else "")
                      + ("I" if with_pid else ""))
        for with_pid in (False, True)
    )
    for n in range(MAX_ACKS_PARSE + 1)
)
_ACK_BLOCKS = tuple(struct.Struct(f"!{n}I") for n in range(MAX_ACKS_PARSE + 1))
_SCRATCH = Buffer(CONTROL_HEADER_MAX + TLS_MTU)


def register_control_packet(builder: FrameBuilder) -> None:
    """Reserve the control header's headroom: the payload is placed at the frame's headroom and
    ``write_control`` prepends the header there (stock: ``reliable_ack_write()`` and
    ``write_control_auth()`` prepend into the buffer's headroom the same way)."""
    builder.reserve("control packet header", headroom=CONTROL_HEADER_MAX)


def control_frame_builder() -> FrameBuilder:
    """A control channel's `FrameBuilder`: tls-mtu of payload, the header registered; a wrap
    registers its own bytes on top (``wrap.base.control_frame``)."""
    builder = FrameBuilder(tun_mtu=TLS_MTU)
    register_control_packet(builder)
    return builder


@cache
def plain_control_frame() -> Frame:
    """The control frame without a wrap (what a `ReliableLayer` of its own builds in)."""
    return control_frame_builder().finalize()


@dataclass(slots=True)
class ControlPacket:
    """One control-channel datagram, decoded.

    ``remote_session_id`` is present exactly when ``acks`` is non-empty (it names the session the
    ACKs are for). ``packet_id`` (the reliability-layer message pid) is ``None`` exactly for
    ``P_ACK_V1``.
    """

    opcode: Opcode
    key_id: int
    session_id: bytes
    acks: tuple[int, ...] = ()
    remote_session_id: bytes | None = None
    packet_id: int | None = None
    payload: bytes = b""


# -- parsing ---------------------------------------------------------------------------------


def parse_control(data: BytesLike) -> ControlPacket:
    """Decode one control datagram held as bytes; raises ``ProtocolError`` (and nothing else)
    if malformed. ``data`` is never changed (read-only input is read through a copy)."""
    try:
        view = memoryview(data)
        if view.readonly:
            view = memoryview(bytearray(view))
        cursor = Buffer.over(view)
    except (TypeError, ValueError) as exc:  # a non-contiguous or multi-dimensional memoryview
        raise ProtocolError(f"unusable packet buffer: {exc}") from None
    cursor.inc_len(cursor.capacity)
    return read_control(cursor)


def read_control(buf: Buffer) -> ControlPacket:
    """Consume one control packet, the whole contents of ``buf``, with typed reads.

    Raises ``ProtocolError`` (and nothing else) if it is malformed; ``buf`` is then as it was
    (offset and length restored: reads never write), so a caller may still look at it.
    """
    offset, size = buf.offset, len(buf)
    try:
        return _read_control(buf, size)
    except ProtocolError:
        buf.reset(offset)
        buf.inc_len(size)
        raise


def _read_control(buf: Buffer, size: int) -> ControlPacket:
    try:
        head = buf.read(_FIXED_HEAD)  # op|kid, own sid, ACK count
    except BoundsError:
        raise ProtocolError(f"control packet too short: {size} bytes") from None
    first = head[0]
    op_value, key_id = first >> OPCODE_SHIFT, first & KEY_ID_MASK
    opcode = _OPCODES.get(op_value)
    if opcode is None:
        # ssl.c: tls_pre_decrypt() diverts the data opcodes first, then rejects anything
        # outside P_FIRST_OPCODE..P_LAST_OPCODE, naming key-method 1 when the peer tried it.
        if op_value in (Opcode.P_DATA_V1, Opcode.P_DATA_V2):
            raise ProtocolError(f"data-channel opcode {op_value} is not a control packet")
        if op_value in (Opcode.P_CONTROL_HARD_RESET_CLIENT_V1,
                        Opcode.P_CONTROL_HARD_RESET_SERVER_V1):
            raise ProtocolError(f"unsupported key-method 1 (opcode {op_value})")
        raise ProtocolError(f"unknown opcode {op_value}")

    session_id = head[1:_FIXED_HEAD - 1].tobytes()
    # ssl.c: tls_pre_decrypt(): "session-id not found in packet" also covers an all-zero sid,
    # which session_id.h defines as "undefined".
    if session_id == _ZERO_SID:
        raise ProtocolError("zero session id")

    # reliable.c: reliable_ack_parse(): a 9th ACK id fails the parse.
    n_acks = head[_FIXED_HEAD - 1]
    if n_acks > MAX_ACKS_PARSE:
        raise ProtocolError(f"{n_acks} ACK ids (at most {MAX_ACKS_PARSE} allowed)")
    remote_session_id: bytes | None = None
    acks: tuple[int, ...] = ()
    if n_acks:
        try:
            acks = _ACK_BLOCKS[n_acks].unpack(buf.read(PACKET_ID_LEN * n_acks))
        except BoundsError:
            raise ProtocolError(
                f"truncated ACK block: {n_acks} ids announced, {size} bytes") from None
        try:
            remote_session_id = buf.read(SESSION_ID_LEN).tobytes()
        except BoundsError:
            raise ProtocolError("ACK block without the remote session id") from None
        # reliable.c: reliable_ack_read() rejects an undefined (zero) remote sid.
        if remote_session_id == _ZERO_SID:
            raise ProtocolError("zero remote session id in ACK block")

    if op_value == _ACK_OPCODE:
        # Stock accepts an empty P_ACK_V1 (a no-op) and ignores bytes after the ACK block, but
        # never sends either (ssl.c: tls_process_state() sends P_ACK_V1 only with ACKs pending,
        # and writes nothing after them). We reject both so parsing stays canonical.
        if not n_acks:
            raise ProtocolError("P_ACK_V1 without ACK ids")
        if len(buf):
            raise ProtocolError(f"{len(buf)} trailing bytes after P_ACK_V1")
        return ControlPacket(opcode, key_id, session_id, acks, remote_session_id)

    # Stock silently skips the reliability step of a non-ACK packet without a msg pid
    # (reliable.c: reliable_ack_read_packet_id() fails); it is malformed either way.
    try:
        packet_id = buf.read_u32()
    except BoundsError:
        raise ProtocolError(f"{opcode.name} without a message packet id") from None
    payload = buf.read(len(buf)).tobytes()
    return ControlPacket(opcode, key_id, session_id, acks, remote_session_id, packet_id, payload)


def skip_to_payload(buf: Buffer) -> int:
    """Consume the header of the plain non-ACK control packet in ``buf``; returns its message
    pid, and ``buf`` then holds the payload. No validation beyond the bounds (the wraps use it to
    look into a packet they carry). A short packet raises `BoundsError` part-way, so callers
    read through a cursor of their own (``Buffer.over(other.data)``) when the packet must stay
    as it is."""
    buf.advance(1 + SESSION_ID_LEN)
    n_acks = buf.read_u8()
    if n_acks:
        buf.advance(PACKET_ID_LEN * n_acks + SESSION_ID_LEN)
    return buf.read_u32()


# -- building --------------------------------------------------------------------------------


def write_control(
    buf: Buffer,
    opcode: Opcode,
    key_id: int,
    session_id: bytes,
    acks: Sequence[int] = (),
    remote_session_id: bytes | None = None,
    packet_id: int | None = None,
) -> None:
    """Turn the payload in ``buf`` (empty for ``P_ACK_V1``) into a control packet by prepending
    its header into the headroom.

    Everything is checked first: misuse raises ``ValueError``, too little headroom
    `BoundsError`, and either way ``buf`` is unchanged.
    """
    op_byte = _check_header(opcode, key_id, session_id, acks, remote_session_id, packet_id)
    if op_byte >> OPCODE_SHIFT == _ACK_OPCODE and len(buf):
        raise ValueError("P_ACK_V1 carries no packet_id and no payload")
    n_acks = len(acks)
    layout = _HEADERS[n_acks][packet_id is not None]
    # One prepend of the whole header (stock: reliable_ack_write() and write_control_auth()
    # prepend theirs); the Buffer refuses it, unchanged, without the headroom.
    view = buf.reserve_head(layout.size)
    try:
        if n_acks:
            if packet_id is None:
                layout.pack_into(view, 0, op_byte, session_id, n_acks, *acks, remote_session_id)
            else:
                layout.pack_into(view, 0, op_byte, session_id, n_acks, *acks, remote_session_id,
                                 packet_id)
        elif packet_id is None:
            layout.pack_into(view, 0, op_byte, session_id, 0)
        else:
            layout.pack_into(view, 0, op_byte, session_id, 0, packet_id)
    except struct.error as exc:  # a wrongly typed field (mypy --strict rejects the call)
        buf.advance(layout.size)
        raise ValueError(f"control header: {exc}") from None


def build_control(pkt: ControlPacket) -> bytes:
    """Encode ``pkt``; the exact inverse of ``parse_control``. Misuse raises ``ValueError``.

    A convenience over ``write_control`` in a scratch buffer of the codec's own (protocol code is
    single-threaded; the bytes are copied out); the session and the server build into pooled
    buffers of the control frame instead.
    """
    buf = _SCRATCH
    if CONTROL_HEADER_MAX + len(pkt.payload) > buf.capacity:
        buf = Buffer(CONTROL_HEADER_MAX + len(pkt.payload))
    buf.reset(CONTROL_HEADER_MAX)
    buf.append(pkt.payload)
    write_control(buf, pkt.opcode, pkt.key_id, pkt.session_id, pkt.acks,
                  pkt.remote_session_id, pkt.packet_id)
    return bytes(buf.data)


def _check_header(
    opcode: Opcode,
    key_id: int,
    session_id: bytes,
    acks: Sequence[int],
    remote_session_id: bytes | None,
    packet_id: int | None,
) -> int:
    """Validate a header before anything is written; returns the op|key_id byte."""
    op = int(opcode)
    if op not in _OPCODES:
        raise ValueError(f"{opcode!r} is not a control opcode 2.6 accepts")
    if not 0 <= key_id <= KEY_ID_MASK:
        raise ValueError(f"key_id {key_id} out of range 0..{KEY_ID_MASK}")
    _check_sid(session_id, "session_id")
    if acks:
        if len(acks) > MAX_ACKS_PARSE:
            raise ValueError(f"{len(acks)} ACK ids (at most {MAX_ACKS_PARSE})")
        if min(acks) < 0 or max(acks) > MAX_MSG_PID:
            raise ValueError(f"ACK ids {tuple(acks)} do not all fit in a u32")
        if remote_session_id is None:
            raise ValueError("ACK ids need remote_session_id")
        _check_sid(remote_session_id, "remote_session_id")
    elif remote_session_id is not None:
        raise ValueError("remote_session_id is only written with ACK ids")
    if op == _ACK_OPCODE:
        if not acks:
            raise ValueError("P_ACK_V1 needs at least one ACK id")
        if packet_id is not None:
            raise ValueError("P_ACK_V1 carries no packet_id and no payload")
    elif packet_id is None:
        raise ValueError(f"{_OPCODES[op].name} needs a packet_id")
    elif not 0 <= packet_id <= MAX_MSG_PID:
        raise ValueError(f"packet_id {packet_id} does not fit in a u32")
    return (op << OPCODE_SHIFT) | key_id


def _check_sid(sid: bytes, what: str) -> None:
    if len(sid) != SESSION_ID_LEN or sid == _ZERO_SID:
        raise ValueError(f"{what} must be {SESSION_ID_LEN} bytes, not all zeros (undefined):"
                         f" got {sid.hex()}")
