"""The control-channel wrap seam: how a control datagram is protected on the wire.

OpenVPN protects control packets in one of four ways (`ssl_pkt.c: tls_wrap_control()`,
`read_control_auth()`): not at all (plain), with an HMAC (`tls-auth`), with an SIV-style
AES-256-CTR + HMAC-SHA256 (`tls-crypt`) or like tls-crypt with a per-client key that the
client carries wrapped in its packets (`tls-crypt-v2`). Each is a `ControlWrap`:

* ``overhead`` is how many bytes it adds to a datagram; ``register(builder)`` puts that into
  the control channel's `FrameBuilder`, so buffers have the headroom and the reliability layer
  keeps every wrapped datagram within tls-mtu;
* ``seal(buf, pid, timestamp)`` turns the plain control packet in ``buf`` into the wire form, in
  place: the new bytes are prepended into the buffer's headroom;
* ``open(buf)`` checks the tag and turns the wire form back into the plain packet in place; it
  returns an `Opened` (the long-form packet-id to check for replay, and the wrap that talks to
  this peer from now on) or None for a packet that failed the check. It keeps no state, so the
  server runs it on packets from unknown sources before anything exists for them (the 2.6 HMAC
  cookie path: a wrong-key flood costs nothing but the check).

Per-peer state, the send packet-id and the replay window of the received ones, lives in a
`WrapChannel` (stock: `tls_session.tls_wrap.opt.packet_id`, one per session). Replay is checked
only after the tag verified.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass

from core import BoundsError, Buffer, Frame, FrameBuilder
from tunnel.protocol.codec import control_frame_builder
from tunnel.protocol.constants import Opcode
from tunnel.protocol.replay import ReplayWindow

__all__ = [
    "OP_SID_LEN",
    "PLAIN",
    "ControlWrap",
    "LongReplayWindow",
    "Opened",
    "PlainWrap",
    "WrapChannel",
    "check_room",
    "pack_long_pid",
    "register_control_channel",
    "restore",
]

OP_SID_LEN = 9  # op|key_id + own session id: stays in front, in clear, in every wrap
LONG_PID = struct.Struct("!II")  # packet_id.h long form: u32 id, u32 time (seconds)
LONG_PID_LEN = LONG_PID.size


def pack_long_pid(packet_id: int, timestamp: int) -> bytes:
    """The long-form packet-id's 8 bytes; `BoundsError` if a value does not fit a u32."""
    try:
        return LONG_PID.pack(packet_id, timestamp)
    except struct.error:
        raise BoundsError(f"packet-id {packet_id!r}, time {timestamp!r}: not u32s") from None


def check_room(buf: Buffer, overhead: int) -> None:
    """Before a seal changes anything: ``op|sid`` is there, and the wrap's bytes fit in front
    of it (`BoundsError` otherwise, the buffer as it was)."""
    if len(buf) < OP_SID_LEN or buf.headroom < overhead:
        raise BoundsError(f"seal: needs {OP_SID_LEN} bytes of packet and {overhead} of headroom,"
                          f" has {len(buf)} and {buf.headroom}")


def restore(buf: Buffer, offset: int, size: int) -> None:
    """Put a buffer whose front was read (reads never write) back as it was."""
    buf.reset(offset)
    buf.inc_len(size)


@dataclass(frozen=True, slots=True)
class Opened:
    """A datagram whose tag verified: its packet-id and the wrap for this peer.

    tls-crypt-v2 adds: the client key's ``metadata`` (server side), whether the client
    announced early negotiation in its V3 reset (``early_negotiation``: the server then asks
    for the wrapped key again in the client's next packet, so it can stay stateless).
    """

    packet_id: int
    timestamp: int
    wrap: ControlWrap
    metadata: bytes | None = None
    early_negotiation: bool = False


class ControlWrap(ABC):
    """One way of protecting control datagrams; immutable key material, no per-peer state."""

    name: str = "?"
    overhead: int = 0
    has_packet_id: bool = True
    # The client's first reset and packet-id (tls-crypt-v2: V3, and 0x0f000000 announcing
    # early negotiation, ssl.c: tls_session_init()).
    client_reset_opcode: Opcode = Opcode.P_CONTROL_HARD_RESET_CLIENT_V2
    initial_packet_id: int = 0
    # The key2 the wrap was made from (tls-auth/tls-crypt file, tls-crypt-v2 client key):
    # 2.6's dynamic tls-crypt key is XORed with it (stock: original_wrap_keydata).
    original_key: bytes | None = None

    @property
    def reserved(self) -> int:
        """What stock subtracts from tls-mtu for this wrap when it sizes control packets
        (`ssl.c: calc_control_channel_frame_overhead()`); tls-crypt reserves a cipher block
        more than it sends, so its largest datagram is 1206 bytes where tls-auth's is 1222."""
        return self.overhead

    def register(self, builder: FrameBuilder) -> None:
        """Register the bytes this wrap prepends with the control channel's frame."""
        builder.reserve(f"control-wrap {self.name}", headroom=self.overhead)

    @property
    def frame(self) -> Frame:
        """The control channel's geometry with this wrap: a tls-mtu datagram plus headroom."""
        cached: Frame | None = self.__dict__.get("_frame")
        if cached is None:
            cached = control_frame(self)
            self.__dict__["_frame"] = cached
        return cached

    @abstractmethod
    def seal(self, buf: Buffer, packet_id: int, timestamp: int) -> None:
        """Plain control packet in ``buf`` -> wire form, in place, by prepends into the
        headroom (needs ``overhead``); `BoundsError`, ``buf`` unchanged, without the room."""

    @abstractmethod
    def open(self, buf: Buffer) -> Opened | None:
        """Wire form -> plain packet in place; None, ``buf`` unchanged, if it fails."""

    def admit(self, opened: Opened, unix_now: float) -> str | None:
        """Server: why a verified first packet's peer must still be refused (tls-crypt-v2's
        key age and verify script), or None. Runs only once the peer proved its address."""
        return None

    def channel(self, *, replay_window: int = 64, replay_seconds: float = 15.0,
                clock_offset: float = 0.0) -> WrapChannel:
        return WrapChannel(self, replay_window=replay_window, replay_seconds=replay_seconds,
                           clock_offset=clock_offset)


class PlainWrap(ControlWrap):
    """No protection (`TLS_WRAP_NONE`): the packet goes out as the codec built it."""

    name = "none"
    overhead = 0
    has_packet_id = False

    def seal(self, buf: Buffer, packet_id: int, timestamp: int) -> None:
        return

    def open(self, buf: Buffer) -> Opened | None:
        return Opened(0, 0, self) if len(buf) >= OP_SID_LEN else None


PLAIN = PlainWrap()


def register_control_channel(builder: FrameBuilder, wrap: ControlWrap) -> None:
    wrap.register(builder)


def control_frame(wrap: ControlWrap, *, dynamic: bool = False) -> Frame:
    """The control channel's own frame (stock keeps one apart from the data channel's too:
    `ssl.c: tls_init_control_channel_frame_parameters()`): tls-mtu (1250) of payload, headroom
    for the packet header (`codec.register_control_packet`) and for the wrap; `dynamic` leaves
    room for the dynamic tls-crypt wrap of renegotiations as well."""
    builder = control_frame_builder()
    register_control_channel(builder, wrap)
    if dynamic:
        builder.reserve("control-wrap dynamic tls-crypt", headroom=DYNAMIC_OVERHEAD)
    return builder.finalize()


DYNAMIC_OVERHEAD = LONG_PID_LEN + 32  # tls-crypt: packet-id + tag
DYNAMIC_RESERVED = DYNAMIC_OVERHEAD + 16  # what stock reserves for tls-crypt


class LongReplayWindow:
    """Replay protection for long-form packet-ids (id, time): `packet_id.c: packet_id_test()`.

    Within one time value ids are checked like the data channel's window; a time that moves
    forward starts a new window, a time that moves back is refused.
    """

    __slots__ = ("_seconds", "_size", "_time", "_window", "replays")

    def __init__(self, size: int = 64, seconds: float = 15.0) -> None:
        self._size = max(size, 1)
        self._seconds = seconds
        self._time: int | None = None
        self._window = ReplayWindow(self._size, seconds)
        self.replays = 0

    def accept(self, packet_id: int, timestamp: int, now: float) -> bool:
        if packet_id == 0:
            self.replays += 1
            return False
        if self._time is None or timestamp > self._time:
            self._time = timestamp
            self._window = ReplayWindow(self._size, self._seconds)
        elif timestamp < self._time:
            self.replays += 1
            return False
        if not self._window.accept(packet_id, now):
            self.replays += 1
            return False
        return True


class WrapChannel:
    """One peer's control channel protection: the wrap, our send packet-id, its replay window.

    ``clock_offset`` turns the monotonic ``now`` into Unix time for the packet-id's time field
    (the protocol layer never reads a clock; the app passes ``time.time() - time.monotonic()``).
    """

    __slots__ = ("_clock_offset", "_replay", "_send_id", "_send_time", "dropped", "replayed",
                 "wrap")

    def __init__(self, wrap: ControlWrap, *, replay_window: int = 64,
                 replay_seconds: float = 15.0, clock_offset: float = 0.0) -> None:
        self.wrap = wrap
        self._clock_offset = clock_offset
        self._send_id = wrap.initial_packet_id
        self._send_time = 0
        self._replay = LongReplayWindow(replay_window, replay_seconds)
        self.dropped = 0
        self.replayed = 0

    def wall_time(self, now: float) -> int:
        return int(now + self._clock_offset) & 0xFFFFFFFF

    def skip_send(self, packet_id: int) -> None:
        """Continue after ``packet_id`` (the server's stateless reset used pid 1)."""
        self._send_id = max(self._send_id, packet_id)

    def next_packet_id(self, now: float) -> tuple[int, int]:
        """`packet_id.c: packet_id_send_update()`: the time is set once, the id counts up."""
        if not self._send_time:
            self._send_time = self.wall_time(now)
        if self._send_id >= 0xFFFFFFFF:
            # Long form may roll over once time moved on; control channels never get there.
            self._send_time = max(self._send_time + 1, self.wall_time(now))
            self._send_id = 0
        self._send_id += 1
        return self._send_id, self._send_time

    def seal(self, buf: Buffer, now: float) -> None:
        if not self.wrap.has_packet_id:
            return
        packet_id, timestamp = self.next_packet_id(now)
        self.wrap.seal(buf, packet_id, timestamp)

    def open(self, buf: Buffer, now: float) -> bool:
        """Check and unwrap one datagram from this peer; False (counted) if it must be dropped."""
        opened = self.wrap.open(buf)
        if opened is None:
            self.dropped += 1
            return False
        return self.accept(opened, now)

    def accept(self, opened: Opened, now: float) -> bool:
        """Replay check of a packet whose tag verified (also for the one that created us)."""
        if not self.wrap.has_packet_id:
            return True
        if not self._replay.accept(opened.packet_id, opened.timestamp, now):
            self.replayed += 1
            return False
        self.wrap = opened.wrap
        return True
