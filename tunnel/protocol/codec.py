"""Control-channel packet codec, plain mode (no tls-auth / tls-crypt): OPENVPN-WIRE.md 2.1.

```
P_CONTROL_*: op|kid (1) | own sid (8) | n (1) | acks (4*n) | [remote sid (8) if n] | pid (4) | data
P_ACK_V1:    op|kid (1) | own sid (8) | n (1) | acks (4*n) | [remote sid (8) if n]
```

Sources: ``ssl_pkt.c: write_control_auth()``, ``reliable.c: reliable_ack_write()`` /
``reliable_ack_parse()`` / ``reliable_ack_read()``, ``ssl.c: tls_pre_decrypt()``.

Parsing is canonical: every datagram ``parse_control`` accepts is re-encoded byte for byte by
``build_control``. Where the stock code is more lenient we are stricter only for input no
stock peer ever produces (documented at each check), so interop is unaffected.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tunnel.protocol.constants import (
    CONTROL_OPCODES,
    KEY_ID_MASK,
    MAX_ACKS_PARSE,
    MAX_MSG_PID,
    PACKET_ID_LEN,
    SESSION_ID_LEN,
    Opcode,
    join_op,
    split_op,
)
from tunnel.protocol.errors import ProtocolError

__all__ = [
    "ControlPacket",
    "build_control",
    "control_overhead",
    "join_op",
    "parse_control",
    "split_op",
]

_U32 = struct.Struct("!I")
_ZERO_SID = bytes(SESSION_ID_LEN)
# op|kid + own sid + ack count: the smallest prefix any control packet has.
_FIXED_HEAD = 1 + SESSION_ID_LEN + 1


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


def control_overhead(n_acks: int) -> int:
    """Header bytes of a non-ACK control packet carrying ``n_acks`` ACK ids.

    ``ssl.c: calc_control_channel_frame_overhead()`` in plain mode: opcode, own sid, ACK block
    (``reliable.h: ACK_SIZE(n)``), message pid.
    """
    if n_acks < 0:
        raise ValueError("n_acks must be >= 0")
    return _FIXED_HEAD + PACKET_ID_LEN * n_acks + (SESSION_ID_LEN if n_acks else 0) + PACKET_ID_LEN


def parse_control(data: bytes | bytearray | memoryview) -> ControlPacket:
    """Decode one control datagram; raises ``ProtocolError`` (and nothing else) if malformed."""
    try:
        view = memoryview(data).cast("B")
    except TypeError as exc:  # a non-contiguous or multi-dimensional memoryview
        raise ProtocolError(f"unusable packet buffer: {exc}") from None
    size = len(view)
    if size < _FIXED_HEAD:
        raise ProtocolError(f"control packet too short: {size} bytes")

    op_value, key_id = split_op(view[0])
    # ssl.c: tls_pre_decrypt() diverts the data opcodes first, then rejects anything outside
    # P_FIRST_OPCODE..P_LAST_OPCODE, naming key-method 1 when that is what the peer tried.
    if op_value in (Opcode.P_DATA_V1, Opcode.P_DATA_V2):
        raise ProtocolError(f"data-channel opcode {op_value} is not a control packet")
    if op_value in (Opcode.P_CONTROL_HARD_RESET_CLIENT_V1, Opcode.P_CONTROL_HARD_RESET_SERVER_V1):
        raise ProtocolError(f"unsupported key-method 1 (opcode {op_value})")
    if op_value not in CONTROL_OPCODES:
        raise ProtocolError(f"unknown opcode {op_value}")
    opcode = Opcode(op_value)

    session_id = bytes(view[1 : 1 + SESSION_ID_LEN])
    # ssl.c: tls_pre_decrypt(): "session-id not found in packet" also covers an all-zero sid,
    # which session_id.h defines as "undefined".
    if session_id == _ZERO_SID:
        raise ProtocolError("zero session id")

    # reliable.c: reliable_ack_parse(): a 9th ACK id fails the parse.
    n_acks = view[1 + SESSION_ID_LEN]
    if n_acks > MAX_ACKS_PARSE:
        raise ProtocolError(f"{n_acks} ACK ids (at most {MAX_ACKS_PARSE} allowed)")
    pos = _FIXED_HEAD
    ack_end = pos + PACKET_ID_LEN * n_acks
    if ack_end > size:
        raise ProtocolError(f"truncated ACK block: {n_acks} ids announced, {size} bytes")
    acks = tuple(_U32.unpack_from(view, pos + PACKET_ID_LEN * i)[0] for i in range(n_acks))
    pos = ack_end

    remote_session_id: bytes | None = None
    if n_acks:
        if pos + SESSION_ID_LEN > size:
            raise ProtocolError("ACK block without the remote session id")
        remote_session_id = bytes(view[pos : pos + SESSION_ID_LEN])
        # reliable.c: reliable_ack_read() rejects an undefined (zero) remote sid.
        if remote_session_id == _ZERO_SID:
            raise ProtocolError("zero remote session id in ACK block")
        pos += SESSION_ID_LEN

    if opcode is Opcode.P_ACK_V1:
        # Stock accepts an empty P_ACK_V1 (a no-op) and ignores bytes after the ACK block, but
        # never sends either (ssl.c: tls_process_state() sends P_ACK_V1 only with ACKs pending,
        # and writes nothing after them). We reject both so parsing stays canonical.
        if not n_acks:
            raise ProtocolError("P_ACK_V1 without ACK ids")
        if pos != size:
            raise ProtocolError(f"{size - pos} trailing bytes after P_ACK_V1")
        return ControlPacket(opcode, key_id, session_id, acks, remote_session_id)

    # Stock silently skips the reliability step of a non-ACK packet without a msg pid
    # (reliable.c: reliable_ack_read_packet_id() fails); it is malformed either way.
    if pos + PACKET_ID_LEN > size:
        raise ProtocolError(f"{opcode.name} without a message packet id")
    (packet_id,) = _U32.unpack_from(view, pos)
    pos += PACKET_ID_LEN
    return ControlPacket(
        opcode, key_id, session_id, acks, remote_session_id, packet_id, bytes(view[pos:])
    )


def build_control(pkt: ControlPacket) -> bytes:
    """Encode ``pkt``; the exact inverse of ``parse_control``. Misuse raises ``ValueError``."""
    if pkt.opcode not in CONTROL_OPCODES:
        raise ValueError(f"{pkt.opcode!r} is not a control opcode 2.6 accepts")
    opcode = Opcode(pkt.opcode)
    if not 0 <= pkt.key_id <= KEY_ID_MASK:
        raise ValueError(f"key_id {pkt.key_id} out of range 0..{KEY_ID_MASK}")
    _check_sid(pkt.session_id, "session_id")
    if len(pkt.acks) > MAX_ACKS_PARSE:
        raise ValueError(f"{len(pkt.acks)} ACK ids (at most {MAX_ACKS_PARSE})")
    if pkt.acks:
        if pkt.remote_session_id is None:
            raise ValueError("ACK ids need remote_session_id")
        _check_sid(pkt.remote_session_id, "remote_session_id")
    elif pkt.remote_session_id is not None:
        raise ValueError("remote_session_id is only written with ACK ids")

    out = bytearray()
    out.append(join_op(opcode, pkt.key_id))
    out += pkt.session_id
    out.append(len(pkt.acks))
    for ack in pkt.acks:
        out += _pack_pid(ack, "ACK id")
    if pkt.remote_session_id is not None:
        out += pkt.remote_session_id

    if opcode is Opcode.P_ACK_V1:
        if not pkt.acks:
            raise ValueError("P_ACK_V1 needs at least one ACK id")
        if pkt.packet_id is not None or pkt.payload:
            raise ValueError("P_ACK_V1 carries no packet_id and no payload")
        return bytes(out)

    if pkt.packet_id is None:
        raise ValueError(f"{opcode.name} needs a packet_id")
    out += _pack_pid(pkt.packet_id, "packet_id")
    out += pkt.payload
    return bytes(out)


def _pack_pid(pid: int, what: str) -> bytes:
    if not 0 <= pid <= MAX_MSG_PID:
        raise ValueError(f"{what} {pid} does not fit in a u32")
    return _U32.pack(pid)


def _check_sid(sid: bytes, what: str) -> None:
    if len(sid) != SESSION_ID_LEN:
        raise ValueError(f"{what} must be {SESSION_ID_LEN} bytes, got {len(sid)}")
    if sid == _ZERO_SID:
        raise ValueError(f"{what} must not be all zeros (undefined)")
