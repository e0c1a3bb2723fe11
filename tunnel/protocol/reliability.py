"""The control channel's reliability layer, one instance per key_id (OPENVPN-WIRE.md section 3).

OpenVPN runs TLS over UDP by giving every control message a u32 message pid, ACKing each pid
individually and retransmitting what is not ACKed (``reliable.c``, driven from
``ssl.c: tls_process_state()`` and ``tls_pre_decrypt()``). This class is that machinery without
I/O: the owner feeds parsed packets in with ``receive(pkt, now)``, takes in-order payloads out
with ``pop_received()``, queues messages with ``queue()``, and collects ready-to-send datagrams
with ``datagrams_to_send(now, seal)``; ``next_deadline()`` says when to call that again.

Each datagram is built in a buffer of the owner's control `BufferPool` as stock builds it
(``ssl_pkt.c: write_control_auth()``): the payload placed at the frame's headroom, the header
prepended in front of it (``codec.write_control``), then the owner's ``seal`` prepends the wrap's
header in place, and the bytes are copied out once; the buffer goes back to the pool at once.

Rules, as in stock 2.6:

* pids start at 0 for every key_id and are assigned at first transmission, in queue order;
* at most ``SEND_WINDOW`` (6) messages in flight: a new pid goes out only while
  ``pid - lowest_unacked < 6`` (``reliable_get_buf_output_sequenced()``);
* a received pid is accepted while ``pid < next_expected + RECV_WINDOW`` (12)
  (``reliable_wont_break_sequentiality()``); if it is new and ``>= next_expected`` it is stored,
  otherwise it is a duplicate; either way it is ACKed (``tls_pre_decrypt()``: "even if it's a
  replay"). Beyond the window: dropped without an ACK;
* retransmit after ``initial_timeout``, doubling after every retransmit (``reliable_send()``),
  or early once ACKs for 3 higher pids arrived (``reliable_send_purge()``, ``N_ACK_RETRANSMIT``);
* ACKs ride on outgoing control packets (at most 4, ``CONTROL_SEND_ACK_MAX``); what is left
  goes out in dedicated P_ACK_V1 packets (up to 8 each, ``RELIABLE_ACK_SIZE``). Every ACK block
  is topped up with recently sent ACK ids (``reliable.c: copy_acks_to_mru()``), so a lost ACK is
  usually replaced by the next packet instead of costing the peer a retransmit timeout.

pids never wrap here: 2.x does not let them in practice (OPENVPN-WIRE.md section 3). After
2**32 - 1 messages on one key_id further messages simply stay queued.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from core import Buffer, BufferPool
from tunnel.protocol.codec import (
    ControlPacket,
    control_overhead,
    plain_control_frame,
    write_control,
)
from tunnel.protocol.constants import (
    CONTROL_OPCODES,
    FAST_RETRANSMIT_ACKS,
    IPV4_UDP_OVERHEAD,
    KEY_ID_MASK,
    MAX_ACKS_ACK_PACKET,
    MAX_ACKS_PARSE,
    MAX_ACKS_PIGGYBACK,
    MAX_MSG_PID,
    RECV_WINDOW,
    SEND_WINDOW,
    SESSION_ID_LEN,
    TLS_MTU,
    TLS_TIMEOUT_DEFAULT,
    Opcode,
)
from tunnel.protocol.errors import ConfigError, ProtocolError

__all__ = ["ReliableLayer", "Seal"]

Seal = Callable[[Buffer, float], None]
"""The owner's last step for a datagram built in a pooled buffer: wrap it in place at ``now``
(``WrapChannel.seal``)."""

# How many distinct pids may wait for an ACK. Stock keeps 8 and silently forgets the rest
# (reliable.c: reliable_ack_acknowledge_packet_id()); the peer then retransmits and we ACK the
# copy. We keep one receive window's worth so a full window of new packets is ACKed at once.
_MAX_PENDING_ACKS = RECV_WINDOW


@dataclass(slots=True)
class _InFlight:
    """A message that has a pid and waits for its ACK (stock: an active ``reliable_entry``)."""

    pid: int
    opcode: Opcode
    payload: bytes
    next_try: float
    timeout: float
    sent: bool = False
    n_acks: int = 0  # ACKs seen for higher pids since the last transmission


class ReliableLayer:
    """Send window, receive window, ACK list and retransmit timers of one key_id."""

    def __init__(
        self,
        *,
        key_id: int,
        local_sid: bytes,
        initial_timeout: float = TLS_TIMEOUT_DEFAULT,
        max_datagram: int = TLS_MTU - IPV4_UDP_OVERHEAD,
        max_acks_per_ack_packet: int = MAX_ACKS_ACK_PACKET,
        pool: BufferPool | None = None,
    ) -> None:
        """``max_datagram`` is the UDP payload limit (1222 over IPv4, 1202 over IPv6).

        ``pool`` gives the buffers datagrams are built in: its frame must have the control
        header's headroom (``codec.register_control_packet``), the wrap's, and room for
        ``max_payload()``; without one the layer keeps a one-block pool of the plain frame.

        ``max_acks_per_ack_packet`` caps the ids in one P_ACK_V1. A stock receiver parses 8 and a
        stock server sends 8; a stock *client* in plain mode sends at most 4 as a workaround for
        SoftEther servers (``ssl_pkt.c: write_control_auth()``). Pass 4 to behave like it.
        """
        if not 0 <= key_id <= KEY_ID_MASK:
            raise ConfigError(f"key_id {key_id} out of range 0..{KEY_ID_MASK}")
        if len(local_sid) != SESSION_ID_LEN or local_sid == bytes(SESSION_ID_LEN):
            raise ConfigError("local_sid must be 8 bytes and not all zeros")
        if not initial_timeout > 0:
            raise ConfigError(f"initial_timeout must be positive, got {initial_timeout}")
        if not 1 <= max_acks_per_ack_packet <= MAX_ACKS_PARSE:
            raise ConfigError(f"max_acks_per_ack_packet must be 1..{MAX_ACKS_PARSE}")
        if max_datagram <= control_overhead(MAX_ACKS_PARSE):
            raise ConfigError(f"max_datagram {max_datagram} leaves no room for a payload")
        if pool is None:
            pool = BufferPool(plain_control_frame(), 1)
        frame = pool.frame
        if max_datagram - control_overhead(MAX_ACKS_PIGGYBACK) > frame.payload_size:
            raise ConfigError(f"max_datagram {max_datagram} exceeds the control frame")
        if frame.headroom < control_overhead(MAX_ACKS_PARSE):
            raise ConfigError("the control frame has no headroom for the packet header")
        self._pool = pool
        self.key_id = key_id
        self.local_sid = bytes(local_sid)
        self.remote_sid: bytes | None = None
        self.initial_timeout = initial_timeout
        self.max_datagram = max_datagram
        self.max_acks_per_ack_packet = max_acks_per_ack_packet

        self._waiting: deque[tuple[Opcode, bytes]] = deque()  # queued, no pid yet
        self._in_flight: dict[int, _InFlight] = {}  # pid -> entry, in pid order
        self._next_send_pid = 0
        self._next_expected = 0
        self._received: dict[int, tuple[Opcode, bytes]] = {}  # stored, not yet popped
        self._pending_acks: list[int] = []  # not yet sent; arrival order, no duplicates
        self._recent_acks: list[int] = []  # already sent, most recent first (stock: lru_acks)
        self._now = 0.0  # the latest `now` we were given; see next_deadline()

        self.retransmits = 0  # every retransmission, fast ones included
        self.fast_retransmits = 0
        self.duplicates = 0
        self.dropped_out_of_window = 0

    # -- sending -----------------------------------------------------------------------------

    def max_payload(self) -> int:
        """Largest payload ``queue()`` accepts: the datagram with 4 piggybacked ACKs still fits.

        1222 - 38 = 1184 over IPv4, as stock (``ssl.c: calc_control_channel_frame_overhead()``).
        """
        return self.max_datagram - control_overhead(MAX_ACKS_PIGGYBACK)

    def queue(self, opcode: Opcode, payload: bytes = b"") -> None:
        """Append a reliable message; it gets its pid when first sent by ``datagrams_to_send``."""
        if opcode not in CONTROL_OPCODES or opcode == Opcode.P_ACK_V1:
            raise ValueError(f"{opcode!r} cannot be sent as a reliable message")
        if len(payload) > self.max_payload():
            raise ValueError(f"payload of {len(payload)} bytes exceeds {self.max_payload()}")
        self._waiting.append((Opcode(opcode), bytes(payload)))

    @property
    def all_acked(self) -> bool:
        """True when nothing is queued and nothing sent is still waiting for its ACK."""
        return not self._waiting and not self._in_flight

    @property
    def outstanding_pids(self) -> tuple[int, ...]:
        """pids sent and not yet ACKed, lowest first (never more than ``SEND_WINDOW``)."""
        return tuple(self._in_flight)

    @property
    def next_send_pid(self) -> int:
        """The pid the next newly sent message will get."""
        return self._next_send_pid

    @property
    def next_expected_pid(self) -> int:
        """The lowest pid not yet handed out by ``pop_received``."""
        return self._next_expected

    def schedule_now(self, now: float) -> None:
        """Make every in-flight message due at ``now`` with a fresh timeout.

        Stock does this once per session on the peer's hard reset or on the SOFT_RESET answer
        to ours (``ssl.c: tls_pre_decrypt()`` ``do_burst`` -> ``reliable_schedule_now()``).
        """
        self._now = now
        for entry in self._in_flight.values():
            entry.next_try = now
            entry.timeout = self.initial_timeout

    def datagrams_to_send(self, now: float, seal: Seal | None = None) -> list[bytes]:
        """Every datagram due at ``now``: new messages the window allows, retransmits, ACKs.

        Messages go out in pid order, each carrying up to 4 ACKs: pending ones first (newest
        first), then recently sent ones repeated. ACKs still pending after that go into P_ACK_V1
        packets (topped up the same way). Each returned ``bytes`` is one UDP payload, wrapped by
        ``seal`` (in place, in the pooled buffer it was built in) when one is given.
        """
        self._now = now
        if not (self._in_flight or self._waiting or self._pending_acks):
            return []  # an established key's layer between handshakes: every timer fire asks
        self._open_window(now)
        out: list[bytes] = []
        for entry in list(self._in_flight.values()):
            fast = entry.n_acks >= FAST_RETRANSMIT_ACKS
            if not (fast or now >= entry.next_try):
                continue
            if entry.sent:
                self.retransmits += 1
                if fast and now < entry.next_try:
                    self.fast_retransmits += 1
            entry.sent = True
            # reliable.c: reliable_send(): exponential backoff per packet.
            entry.next_try = now + entry.timeout
            entry.timeout *= 2
            entry.n_acks = 0
            acks = self._ack_block(MAX_ACKS_PIGGYBACK)
            out.append(self._build(entry.opcode, acks, entry.pid, entry.payload, now, seal))
        # ssl.c: tls_process_state(): ACKs with nothing to ride on go out in P_ACK_V1.
        while self._ack_ready():
            acks = self._ack_block(self.max_acks_per_ack_packet)
            out.append(self._build(Opcode.P_ACK_V1, acks, None, b"", now, seal))
        return out

    def _build(
        self, opcode: Opcode, acks: tuple[int, ...], pid: int | None, payload: bytes,
        now: float, seal: Seal | None,
    ) -> bytes:
        """One datagram of this key_id; the peer's sid rides along only behind ACKs."""
        pool = self._pool
        buf = pool.acquire()
        try:
            buf.append(payload)
            write_control(buf, opcode, self.key_id, self.local_sid, acks,
                          self.remote_sid if acks else None, pid)
            if seal is not None:
                seal(buf, now)
            return bytes(buf.data)
        finally:
            pool.release(buf)

    def next_deadline(self) -> float | None:
        """When ``datagrams_to_send`` next has something to do; ``None`` if never (idle).

        If something can go out right away (pending ACKs, a queued message the window admits, a
        fast retransmit) this returns the latest ``now`` the layer was given, so any current
        time is at or past it: "call datagrams_to_send now". Otherwise it is the earliest
        retransmit time. The owner calls ``datagrams_to_send`` after ``receive``/``queue``
        anyway; this value is for arming the timer.
        """
        if self._ack_ready() or (self._waiting and self._window_open()):
            return self._now
        deadline: float | None = None
        for entry in self._in_flight.values():
            if entry.n_acks >= FAST_RETRANSMIT_ACKS or not entry.sent:
                return self._now
            if deadline is None or entry.next_try < deadline:
                deadline = entry.next_try
        return deadline

    def skip_to(self, *, next_send_pid: int, next_recv_pid: int) -> None:
        """Continue as if pids below these had been exchanged and ACKed both ways.

        For a server that answered the hard reset statelessly (HMAC cookie): afterwards it acts
        as if pid 0 went both ways (``ssl.c: session_skip_to_pre_start()``). Only valid before
        anything was sent or received; queued messages keep waiting and get pids from
        ``next_send_pid`` on.
        """
        if self._in_flight or self._received or self._pending_acks or self._next_send_pid:
            raise ValueError("skip_to() is only valid before any message was sent or received")
        if not (0 <= next_send_pid <= MAX_MSG_PID and 0 <= next_recv_pid <= MAX_MSG_PID):
            raise ValueError("pids must fit in a u32")
        self._next_send_pid = next_send_pid
        self._next_expected = next_recv_pid

    # -- receiving ---------------------------------------------------------------------------

    def receive(self, pkt: ControlPacket, now: float) -> None:
        """Process one parsed control packet of this key_id.

        Raises ``ProtocolError`` with no state changed if the packet belongs elsewhere: another
        key_id, ACKs for another session (``reliable.c: reliable_ack_read()``: "ACK read BAD
        SESSION-ID FROM REMOTE"), or, once ``remote_sid`` is known, another sender. If
        ``remote_sid`` is still ``None`` it is taken from this packet, because ACKs for it
        must name that session.
        """
        if pkt.key_id != self.key_id:
            raise ProtocolError(f"key_id {pkt.key_id} fed to the layer of key_id {self.key_id}")
        if pkt.acks and pkt.remote_session_id != self.local_sid:
            raise ProtocolError("ACK for another session")
        if self.remote_sid is not None and pkt.session_id != self.remote_sid:
            raise ProtocolError("control packet from another session")
        pid = pkt.packet_id
        if pid is None and pkt.opcode != Opcode.P_ACK_V1:
            raise ProtocolError(f"{pkt.opcode!r} without a message packet id")

        self._now = now
        if self.remote_sid is None:
            self.remote_sid = pkt.session_id
        self._purge_acked(pkt.acks)
        if pid is None or pkt.opcode == Opcode.P_ACK_V1:
            return
        if pid >= self._next_expected + RECV_WINDOW:
            # reliable_wont_break_sequentiality(): storing it could deadlock the window.
            self.dropped_out_of_window += 1
            return
        if pid < self._next_expected or pid in self._received:
            # reliable_not_replay() fails: not stored, but ACKed again below, because our
            # earlier ACK may have been lost.
            self.duplicates += 1
        else:
            self._received[pid] = (Opcode(pkt.opcode), pkt.payload)
        if pid not in self._pending_acks and len(self._pending_acks) < _MAX_PENDING_ACKS:
            self._pending_acks.append(pid)

    def pop_received(self) -> list[tuple[Opcode, bytes]]:
        """Stored messages in pid order, each exactly once, up to the first gap.

        The receive window slides only here (stock frees a receive buffer once TLS consumed it,
        ``reliable_mark_deleted()``), so the owner should pop after every ``receive``.
        """
        out: list[tuple[Opcode, bytes]] = []
        while self._next_expected in self._received:
            out.append(self._received.pop(self._next_expected))
            self._next_expected += 1
        return out

    # -- internals ---------------------------------------------------------------------------

    def _window_open(self) -> bool:
        if self._next_send_pid > MAX_MSG_PID:
            return False
        if not self._in_flight:
            return True
        lowest_unacked = next(iter(self._in_flight))
        return self._next_send_pid - lowest_unacked < SEND_WINDOW

    def _open_window(self, now: float) -> None:
        """Give pids to queued messages while the send window allows (due immediately)."""
        while self._waiting and self._window_open():
            opcode, payload = self._waiting.popleft()
            pid = self._next_send_pid
            self._next_send_pid += 1
            self._in_flight[pid] = _InFlight(pid, opcode, payload, now, self.initial_timeout)

    def _purge_acked(self, acks: tuple[int, ...]) -> None:
        # reliable.c: reliable_send_purge(): an ACKed pid leaves the send window; every still
        # unACKed lower pid counts one ACK towards its fast retransmit. Unknown or repeated
        # ids are harmless (stock re-sends recent ACKs on purpose).
        for ack in acks:
            self._in_flight.pop(ack, None)
            for entry in self._in_flight.values():
                if entry.pid < ack and entry.sent:
                    entry.n_acks += 1

    def _ack_ready(self) -> bool:
        return bool(self._pending_acks) and self.remote_sid is not None

    def _ack_block(self, limit: int) -> tuple[int, ...]:
        """The ACK ids for one outgoing packet: up to ``limit`` pending ids, newest first, then
        recently sent ids to fill the block. Empty while the remote sid is unknown."""
        if self.remote_sid is None:
            return ()
        fresh = self._pending_acks[-limit:]
        del self._pending_acks[-limit:]
        # reliable.c: copy_acks_to_mru() / reliable_ack_write(): the ids written now move to
        # the front of the most-recently-used list, and the block is filled from its front.
        recent = self._recent_acks
        for pid in fresh:
            if pid in recent:
                recent.remove(pid)
            recent.insert(0, pid)
        del recent[MAX_ACKS_PARSE:]
        return tuple(recent[:limit])
