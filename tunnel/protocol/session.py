"""One OpenVPN peer connection, sans-I/O: the coordinator of its parts.

A `Session` is what `ssl.c`'s `tls_multi` plus the per-connection parts of `forward.c` are in
OpenVPN. It owns the key states (handshakes: the primary, one being negotiated, a replaced one
until its last packets are ACKed) and routes every input to the part that decides:

- `keyring.KeyRing`: the data keys (current, next, lame duck);
- `push_client.PushClient` / `push_server.PushServer`: the role's half of push (only one exists);
- `deferred_auth.DeferredAuth`: server keys waiting for a management client-auth verdict;
- `keepalive.Keepalive`: ping / ping-restart, and the OCC messages;
- `rekey.RekeySchedule`: when to renegotiate.

The control path works on `bytes` (a few packets per handshake). The data path, `encrypt` and
`decrypt`, works in place on pooled `core.Buffer`s and allocates no packet memory.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable

from core import Buffer, FrameBuilder
from tunnel.protocol.cbc import CBC_BLOCK_SIZE, cbc_overhead
from tunnel.protocol.codec import ControlPacket, read_control
from tunnel.protocol.compress import Compression
from tunnel.protocol.constants import OCC_MAGIC, PING_MAGIC, Opcode
from tunnel.protocol.control_channel import ControlChannel
from tunnel.protocol.datachannel import AEAD_ASSEMBLY_SIZE, DATA_V2_OVERHEAD
from tunnel.protocol.datacipher import DataCipherKey, make_data_key
from tunnel.protocol.datakey import PACKET_ID_MAX
from tunnel.protocol.deferred_auth import DeferredAuth
from tunnel.protocol.drops import AUTH_FAILED, MALFORMED, NO_SESSION, REPLAY
from tunnel.protocol.errors import HandshakeError, ProtocolError, SessionEnd
from tunnel.protocol.events import (
    AuthRequested,
    ControlMessageReceived,
    DataChannelReady,
    Event,
    HandshakeComplete,
    PushApplied,
    SessionClosed,
)
from tunnel.protocol.geometry import data_frame
from tunnel.protocol.keepalive import (
    OCC_EXIT_MESSAGE,
    OCC_FIRST,
    OCC_SIZE,
    PING_SIZE,
    Keepalive,
    KeepaliveDue,
    OccKind,
    occ_kind,
    occ_reply,
)
from tunnel.protocol.keymethod2 import OPTIONS_MAX_LEN, KeyMethod2, new_key_method2
from tunnel.protocol.keyring import KeyRing
from tunnel.protocol.keystate import KeyPhase, KeyState
from tunnel.protocol.memory import ConnectionMemory
from tunnel.protocol.messages import (
    IV_PROTO_CC_EXIT_NOTIFY,
    IV_PROTO_DATA_V2,
    IV_PROTO_DYN_TLS_CRYPT,
    IV_PROTO_REQUEST_PUSH,
    PushOptions,
    classify_control_message,
    negotiate_cipher,
    options_string_value,
    parse_peer_info,
)
from tunnel.protocol.mssfix import MssfixMode, clamp_mss, mss_for
from tunnel.protocol.prf import derive_key2
from tunnel.protocol.push_client import PushClient
from tunnel.protocol.push_server import AUTH_FAILED_LINGER, PushServer
from tunnel.protocol.rekey import RekeySchedule, next_key_id
from tunnel.protocol.replay import ReplayWindow
from tunnel.protocol.rows import ReceivedRows, SegmentRows
from tunnel.protocol.settings import SessionSettings
from tunnel.protocol.tls import TlsSession
from tunnel.protocol.traffic import Traffic
from tunnel.protocol.verdicts import CONSUMED, DROPPED, KEEPALIVE, TO_TUN, Verdict
from tunnel.protocol.wrap.base import OP_SID_LEN, WrapChannel

# mssfix's quick test on the data path: an IPv4 packet is a TCP SYN (IP protocol, TCP flag).
_TCP = 6
_SYN = 0x02

# `comp-lzo no` framing: one byte in front of every data payload (comp.h NO_COMPRESS_BYTE).
COMP_LZO_STUB_SIZE = 1
# The most any compression framing puts in front of a payload (v2's 0x50 0x00 escape).
_COMP_MAX_PREFIX = 2
# Seconds a client keeps sending on the current key after a renegotiation, waiting for the
# server's first packet on the new key (stock's KM2 retransmit is 2 s; the lame duck lives
# tran-window, 60 s by default).
SEND_SWITCH_GRACE = 5.0

# Scratch room for pings and OCC messages (control-rate traffic, not the data path): the
# largest is an OCC_REPLY carrying the options string (at most 512 bytes, keymethod2.py).
# Sized for the largest kind: CBC with SHA512 (its padding block and `update_into` slack at the
# end, beside AEAD's assembly room).
_SCRATCH_HEADROOM = max(DATA_V2_OVERHEAD, cbc_overhead("SHA512")) + _COMP_MAX_PREFIX
_SCRATCH_SIZE = (_SCRATCH_HEADROOM + len(OCC_MAGIC) + 1 + OPTIONS_MAX_LEN
                 + max(AEAD_ASSEMBLY_SIZE, 2 * CBC_BLOCK_SIZE))


class Session:
    """A client, or one client instance of a server."""

    def __init__(
        self,
        settings: SessionSettings,
        *,
        remote_addr: tuple[str, int],
        now: float,
        local_sid: bytes | None = None,
        peer_id: int | None = None,
        wrap_channel: WrapChannel | None = None,
        push_items: Callable[[Session], list[str]] | None = None,
    ) -> None:
        self.settings = settings
        self.is_client = settings.is_client
        self.remote_addr = remote_addr
        self.local_sid = local_sid if local_sid is not None else _random_session_id()
        self.remote_sid: bytes | None = None
        self.created_at = now
        self.keys: list[KeyState] = []
        self.primary: KeyState | None = None
        # The data keys: current, next, lame duck; `data_keys` is its by-key_id list (the same
        # list object, for one lookup per received packet).
        self.ring = KeyRing()
        self._send_switch_at: float | None = None  # a client's fallback to the new send key
        self.data_keys = self.ring.by_id
        self.cipher: str | None = None
        self.remote_cipher: str | None = None  # the `cipher` of the peer's options string
        # Server: the peer-id this client was given. Client: the pushed one (None = P_DATA_V1).
        self.peer_id = peer_id
        self.tx_peer_id: int | None = None
        # Server: what the client's key-method 2 announced.
        self.peer_info: dict[str, str] = {}
        self.peer_common_name: str | None = None
        self.iv_proto = 0
        # The role's half of push: exactly one of the two.
        self.push_client = PushClient(settings) if self.is_client else None
        self.push_server = None if self.is_client else PushServer(settings)
        # Server: the push list for this client (route-gateway, topology, ifconfig, routes...);
        # the push reply appends the negotiated items (peer-id, cipher, protocol-flags, tun-mtu).
        self._push_items = push_items
        self.deferred_auth = DeferredAuth(settings.hand_window)
        self.keepalive = Keepalive(settings.ping, settings.ping_restart)
        self.rekey = RekeySchedule(settings.reneg_sec, jitter=not self.is_client)
        self.last_rx = now
        self.last_tx = now
        # Server: link bytes and datagrams of this client's whole connection, counted by the
        # Server (status, bytecount, metrics); a Client counts its totals in Client.traffic.
        self.traffic = Traffic()
        self.mssfix = settings.mssfix > 0
        kind = settings.compression or ("stub" if settings.comp_lzo_stub else None)
        self.comp: Compression | None = self._compression(kind)
        self._set_mss()
        self.closed: SessionClosed | None = None
        self._events: deque[Event] = deque()
        self._data_out: list[bytes] = []
        self._scratch = Buffer(_SCRATCH_SIZE)
        # The control wraps (tls-auth/tls-crypt/-v2, and dynamic tls-crypt for renegotiations).
        self.control = ControlChannel(settings, wrap_channel, server=not self.is_client)
        # counters
        self.dropped_control = 0
        self.dropped_data = 0
        # This connection's gc arena, taken by the iterations that touch it (memory.py).
        self.memory = ConnectionMemory()
        # Why the last decrypt() said DROPPED (a drops.CAUSES name), for the endpoint's count.
        self.last_drop = MALFORMED
        self.control_drop = MALFORMED  # the same for the last refused control packet
        self._drop_seen: dict[int, tuple[DataCipherKey, int, int]] = {}
        # The causes of the rows the last `open_rows` refused, in row order.
        self.row_drops: list[str] = []

    # -- views of the parts ------------------------------------------------------------------

    @property
    def send_key(self) -> DataCipherKey | None:
        """The data key that seals outgoing packets (None until the data channel is up)."""
        return self.ring.current

    @property
    def renegotiations(self) -> int:
        return self.ring.rotations

    @property
    def wrap_channel(self) -> WrapChannel:
        return self.control.initial

    @property
    def reneg_channel(self) -> WrapChannel | None:
        """2.6 dynamic tls-crypt: the channel of key_id > 0 once both peers agreed on it."""
        return self.control.reneg

    @property
    def pushed(self) -> PushOptions | None:
        """Client: the server's PUSH_REPLY once it was applied."""
        return self.push_client.pushed if self.push_client is not None else None

    @property
    def auth_token(self) -> tuple[str | None, str] | None:
        """Client: the auth-token (username, token) sent instead of the password; the Client
        carries it across reconnects (AuthTokenStore)."""
        return self.push_client.auth_token if self.push_client is not None else None

    @auth_token.setter
    def auth_token(self, token: tuple[str | None, str] | None) -> None:
        if self.push_client is not None:
            self.push_client.auth_token = token

    @property
    def auth_rejected(self) -> bool:
        """Client: the server answered AUTH_FAILED."""
        return self.push_client is not None and self.push_client.auth_rejected

    @property
    def token_rejected(self) -> bool:
        """Client: ... to the auth-token we sent."""
        return self.push_client is not None and self.push_client.token_rejected

    @property
    def auth_failed(self) -> str | None:
        """Server: why this client is refused (it was sent AUTH_FAILED), or None."""
        return self.push_server.refusal if self.push_server is not None else None

    @property
    def auth_pending(self) -> dict[int, int]:
        """Server: auth id -> key_id of the keys waiting for `authorize`."""
        return self.deferred_auth.pending

    def _compression(self, kind: str | None) -> Compression | None:
        if kind is None:
            return None
        s = self.settings
        return Compression(kind, decompress=s.allow_compression == "asym",
                           limit=max(s.tun_mtu, 1600))

    def _set_mss(self) -> None:
        """The MSS clamp from the data frame of the cipher and framing in use (recomputed once
        the cipher is known)."""
        s = self.settings
        self._mss_v4, self._mss_v6 = _mss_clamps(
            self.cipher,  # None until negotiated: an AEAD's geometry
            s.auth, self.comp.kind if self.comp is not None else None, s.link_framing,
            s.mssfix, s.outer_overhead, s.mssfix_mode,
        )

    # -- starting --------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Client: send P_CONTROL_HARD_RESET_CLIENT_V2 (V3 with tls-crypt-v2) for key_id 0."""
        key = self._new_key_state(0, now)
        # V2, or V3 with tls-crypt-v2 (the wrap appends the client's wrapped key to it).
        key.send_reset(self.settings.control_wrap.client_reset_opcode)
        self.primary = key

    def accept(self, packet: ControlPacket, now: float) -> None:
        """Server: the client echoed our cookie; create key_id 0 as if the resets were exchanged
        (ssl.c: session_skip_to_pre_start), then process the packet that proved it."""
        self.remote_sid = packet.session_id
        key = self._new_key_state(0, now)
        key.skip_reset_exchange()
        self.primary = key
        self._receive_packet(key, packet, now)
        self._service(now)

    def _new_key_state(self, key_id: int, now: float) -> KeyState:
        s = self.settings
        tls = TlsSession(s.tls_context, server_side=not self.is_client, settings=s.tls_settings,
                         peer_address=self.remote_addr)
        username = password = None
        if self.push_client is not None:
            try:
                username, password = self.push_client.user_pass()
            except SessionEnd as end:
                self._end(end, self.last_rx)
        local_key = new_key_method2(
            from_client=self.is_client,
            options=s.options_string,
            peer_info=s.peer_info if self.is_client else None,
            username=username,
            password=password,
        )
        del password  # the only reference left is the message's, dropped once it is sent
        key = KeyState(
            key_id=key_id,
            is_client=self.is_client,
            local_sid=self.local_sid,
            remote_sid=self.remote_sid,
            tls=tls,
            local_key=local_key,
            now=now,
            hand_window=s.hand_window,
            tls_timeout=s.tls_timeout,
            max_datagram=s.max_control_datagram,
            control_pool=self.control.pool,
        )
        key.on_remote_key = self._on_remote_key
        self.keys.append(key)
        return key

    # -- control input ---------------------------------------------------------------------

    def receive_wrapped(self, buf: Buffer, now: float) -> None:
        """One wrapped control datagram: tag and replay check, unwrapped in place, processed."""
        if self.closed is not None:
            return
        if len(buf) < OP_SID_LEN:
            # Stock refuses it before any wrap check ("TLS State Error: Too short packet",
            # ssl_pkt.c: tls_pre_decrypt_lite): malformed, not a failed tag.
            self.dropped_control += 1
            self.control_drop = MALFORMED
            return
        if not self.control.open(buf, now):
            self.dropped_control += 1
            self.control_drop = AUTH_FAILED  # the wrap's tag (or its replay check) refused it
            return
        self.control_drop = MALFORMED
        self.receive_control(buf, now)

    def receive_control(self, buf: Buffer, now: float) -> None:
        """One unwrapped control datagram (consumed) from the peer's address. Bad input is
        counted, never raised."""
        if self.closed is not None:
            return
        try:
            packet = read_control(buf)
        except ProtocolError:
            self.dropped_control += 1
            return
        if (self.remote_sid is None and self.is_client
                and packet.opcode != Opcode.P_CONTROL_HARD_RESET_SERVER_V2):
            # Only the server's hard reset tells a client which server session it talks to
            # (ssl.c: tls_pre_decrypt matches the session id, else takes a hard reset; the
            # rest is "Unroutable control packet"). Otherwise the AUTH_FAILED that our refused
            # previous session is still being retransmitted from the same server address would
            # pin this session to that one, and the server's reset to it would be refused.
            self.dropped_control += 1
            self.control_drop = NO_SESSION
            return
        key = self._key_for(packet, now)
        if key is None:
            self.dropped_control += 1
            return
        self._receive_packet(key, packet, now)
        self._service(now)

    def _key_for(self, packet: ControlPacket, now: float) -> KeyState | None:
        for key in self.keys:
            if key.key_id == packet.key_id and key.phase is not KeyPhase.ERROR:
                return key
        if (
            packet.opcode == Opcode.P_CONTROL_SOFT_RESET_V1
            and self.primary is not None
            and self.primary.phase is KeyPhase.ACTIVE
            and packet.key_id == next_key_id(self.primary.key_id)
            and packet.session_id == self.remote_sid
        ):
            # The peer starts a renegotiation: answer with our own SOFT_RESET (ssl.c:
            # tls_pre_decrypt accepts it only for our next key_id and an established key).
            return self._start_soft_reset(packet.key_id, now)
        return None

    def _receive_packet(self, key: KeyState, packet: ControlPacket, now: float) -> None:
        try:
            key.receive(packet, now)
        except ProtocolError:
            self.dropped_control += 1
            return
        except HandshakeError as exc:
            self._handshake_failed(key, str(exc), now)
            return
        if self.remote_sid is None:
            self.remote_sid = packet.session_id
        self.last_rx = now

    def _handshake_failed(self, key: KeyState, reason: str, now: float) -> None:
        key.fail(reason)
        if key is self.primary and self.ring.current is None:
            self._close(reason, restart=self.is_client, now=now)

    # -- data path (hot) -------------------------------------------------------------------

    def encrypt(self, buf: Buffer, now: float) -> bool:
        """Seal the IP packet in `buf` in place. False when no data key is ready yet."""
        key = self.ring.current
        if key is None:
            return False
        if self.mssfix:
            packet = buf.data
            if len(packet) >= 40 and (
                packet[0] != 0x45 or (packet[9] == _TCP and packet[33] & _SYN)
            ):  # as in decrypt: only a TCP SYN can need the clamp
                clamp_mss(packet, self._mss_v4, self._mss_v6)
        comp = self.comp
        if comp is not None:
            comp.frame(buf)
        key.seal(buf, self.tx_peer_id)
        self.last_tx = now
        return True

    def seal_segments(self, rows: SegmentRows, now: float) -> bool:
        """`encrypt` for all segments of one TSO super-packet at once (tunnel/io/tso_rows.py).
        False, with nothing done, when this session cannot (no key yet, a key kind without
        `seal_rows`, compression, or fewer packet-ids left than segments): the caller then
        takes the segments one by one through `encrypt`. No mssfix: a super-packet is never
        a SYN (`SuperCut.load` refuses those)."""
        key = self.ring.current
        if (
            key is None
            or not key.seals_rows
            or self.comp is not None
            or key.send_packet_id + rows.count > PACKET_ID_MAX
        ):
            return False
        rows.fill()
        key.seal_rows(rows, self.tx_peer_id)
        self.last_tx = now
        return True

    def decrypt(self, buf: Buffer, now: float) -> Verdict:
        """Open a data datagram in place; returns TO_TUN, CONSUMED or DROPPED."""
        data = buf.data
        key = self.data_keys[data[0] & 7]
        if key is None or not key.open(buf, now):
            return self._data_dropped(key)
        return self.opened(buf, key, now)

    def opened(self, buf: Buffer, key: DataCipherKey, now: float) -> Verdict:
        """`decrypt` after `key` opened `buf` (authentic, accepted by the replay window): the
        payload is what is left in `buf`. Also where the lone-packet lane (tunnel/io/lane.py)
        hands over a payload it opened but does not deliver itself."""
        self.last_rx = now
        comp = self.comp
        if comp is not None and not comp.unframe(buf):
            self.dropped_data += 1  # a compressed packet we may not decompress, or garbage
            self.last_drop = MALFORMED
            return DROPPED
        ring = self.ring
        if key is not ring.current and key.key_id == ring.next_id:
            # The peer already sends on the new key, so it has derived it: switch too.
            self._switch_send_key(key)
        # One view of the payload for the three checks (each Buffer call costs per packet).
        payload = buf.data
        size = len(payload)
        if size == PING_SIZE and payload == PING_MAGIC:
            return KEEPALIVE
        # OCC: the magic at the head, with or without an opcode after it (occ.h is_occ_msg
        # matches the head; a bare magic is consumed and does nothing, as in stock).
        if size >= OCC_SIZE and payload[0] == OCC_FIRST and payload[:OCC_SIZE] == OCC_MAGIC:
            self._handle_occ(payload, now)
            return CONSUMED
        # mssfix: only a TCP SYN is changed; an IPv4 packet without options that is not one
        # is told apart here, without the call (clamp_mss repeats the test).
        if self.mssfix and size >= 40 and (
            payload[0] != 0x45 or (payload[9] == _TCP and payload[33] & _SYN)
        ):
            clamp_mss(payload, self._mss_v4, self._mss_v6)
        return TO_TUN

    def open_rows(self, rows: ReceivedRows, now: float) -> list[int] | None:
        """`decrypt` for datagrams of one size from this session's peer at once (a GRO run:
        tunnel/io/gro_rows.py): per row the verdict `decrypt` would give (TO_TUN, KEEPALIVE,
        CONSUMED, DROPPED, with the same counters and `last_drop`). None, with nothing done,
        when this session cannot (no key for the key_id, a key kind without `open_rows`,
        compression): the caller then takes them one by one through `decrypt`."""
        key = self.data_keys[rows.first_byte & 7]
        if key is None or not key.seals_rows or self.comp is not None:
            return None
        oks = key.open_rows(rows, now)
        if oks is None:
            return None
        verdicts: list[int] = [TO_TUN] * len(oks)
        if not all(oks):
            # Each refused row with its own cause (as `decrypt` -> `_data_dropped` gives one
            # per packet); the key's counters already count them all.
            causes = self.row_drops = []
            for index, ok in enumerate(oks):
                if not ok:
                    verdicts[index] = DROPPED
                    causes.append(AUTH_FAILED if ok is False else REPLAY)
            self.dropped_data += len(causes)
            self.last_drop = causes[-1]
            self._drop_seen[key.key_id] = (key, getattr(key, "auth_failures", 0),
                                           getattr(key, "replays", 0))
            if not any(oks):
                return verdicts
        self.last_rx = now
        ring = self.ring
        if key is not ring.current and key.key_id == ring.next_id:
            self._switch_send_key(key)  # as in decrypt: the peer already sends on it
        for index in rows.unusual():
            if not oks[index]:
                continue
            payload = rows.plain(index)
            size = len(payload)
            if size == PING_SIZE and payload == PING_MAGIC:
                verdicts[index] = KEEPALIVE
            elif size >= OCC_SIZE and payload[0] == OCC_FIRST and payload[:OCC_SIZE] == OCC_MAGIC:
                self._handle_occ(payload, now)
                verdicts[index] = CONSUMED
            elif self.mssfix:
                clamp_mss(payload, self._mss_v4, self._mss_v6)
        return verdicts

    def _data_dropped(self, key: DataCipherKey | None) -> Verdict:
        """Count a refused data packet and note why (off the hot path: drops only)."""
        self.dropped_data += 1
        if key is None:
            self.last_drop = NO_SESSION  # no data key for its key_id (stock: keys out of sync)
            return DROPPED
        # The key counts why it refused; what changed since its last refusal says which.
        auth, replay = getattr(key, "auth_failures", 0), getattr(key, "replays", 0)
        seen = self._drop_seen.get(key.key_id)
        before = (seen[1], seen[2]) if seen is not None and seen[0] is key else (0, 0)
        self._drop_seen[key.key_id] = (key, auth, replay)
        if auth > before[0]:
            self.last_drop = AUTH_FAILED
        elif replay > before[1]:
            self.last_drop = REPLAY
        else:
            self.last_drop = MALFORMED
        return DROPPED

    # -- control output ----------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out = self._data_out
        self._data_out = []
        for key in self.keys:
            out.extend(key.datagrams_to_send(now, self.control.seal))
        if out:
            self.last_tx = now
        return out

    def _start_dynamic_tls_crypt(self) -> bool:
        """Derive the renegotiation wrap from the key_id 0 session; False if we cannot."""
        key = self._key_state(0)
        return self.control.start_dynamic(key.tls if key is not None else None)

    def send_control_message(self, text: str) -> None:
        key = self._control_key()
        if key is not None:
            key.send_message(text)

    def _control_key(self) -> KeyState | None:
        """Control messages go on the newest key whose handshake is done."""
        for key in reversed(self.keys):
            if key.handshake_done and key.phase is not KeyPhase.ERROR:
                return key
        return None

    # -- timers ------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if self.closed is not None:
            return None
        # The earliest of every deadline, without building a list: a server asks once per
        # session per timer fire (a keepalive), so this is the idle server's per-client cost.
        ring = self.ring
        at = self.keepalive.next_deadline(self.last_rx, self.last_tx, ring.current is not None)
        for key in self.keys:
            d = key.next_deadline()
            if d is not None and (at is None or d < at):
                at = d
        push_client, push_server = self.push_client, self.push_server
        for d in (
            push_client.next_request if push_client is not None else None,
            push_server.close_at if push_server is not None else None,
            self.rekey.at,
            self.deferred_auth.deadline,
            ring.deadline(),
            self._send_switch_at,
        ):
            if d is not None and (at is None or d < at):
                at = d
        return at

    def handle_timer(self, now: float) -> None:
        if self.closed is not None:
            return
        if self._steady(now):
            # Only the keepalive can be due (every other step of `_service` is a no-op in this
            # state, see `_steady`): an idle server's timer fires once per client per `ping`
            # seconds, and the full service round touched a dozen objects per client.
            self._keepalive(now)
            return
        for key in self.keys:
            if key.phase is KeyPhase.ACTIVE:
                # An active key's input is read when it arrives (receive -> advance), so a
                # timer has nothing for it, and the TLS read it would try costs an exception
                # (SSLWantReadError, ~5 us) per fire: ~5 % of an idle server's time.
                continue
            try:
                key.advance(now)
            except HandshakeError as exc:
                self._handshake_failed(key, str(exc), now)
        self._service(now)

    def _steady(self, now: float) -> bool:
        """An established server session with nothing in progress: one key state, active, its
        data key installed and sending, nothing waiting to be read, no lame duck or send
        switch, the push reply sent, no deferred authentication and no refusal pending, the
        packet-id far from wrapping and the next renegotiation not yet due. Then every step of
        `_service` but the keepalive does nothing, and the timer runs only that. Anything
        else (a renegotiation, a new key, a client session) takes the full round."""
        keys = self.keys
        if len(keys) != 1 or self.push_client is not None:
            return False
        key = keys[0]
        send_key = self.ring.current
        push_server = self.push_server
        rekey_at = self.rekey.at
        deferred = self.deferred_auth
        return (
            key is self.primary
            and key.phase is KeyPhase.ACTIVE
            and key.data_key_installed
            and not key.inbox
            and send_key is not None
            and send_key.key_id == key.key_id
            and self.ring.next_id is None
            and self.ring.lame_duck is None
            and self._send_switch_at is None
            and not send_key.needs_renegotiation
            and rekey_at is not None
            and now < rekey_at
            and push_server is not None
            and push_server.replied_at is not None
            and push_server.close_at is None
            and deferred.deadline is None
            and not deferred.pending
        )

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- shutdown ----------------------------------------------------------------------------

    def close(self, now: float, reason: str = "shutdown") -> None:
        """Local shutdown: tell the peer (explicit-exit-notify) and close."""
        if self.closed is not None:
            return
        notify = self.settings.explicit_exit_notify
        if self.ring.current is not None and notify:
            if self.push_client is not None:
                if self.push_client.cc_exit:
                    self.send_control_message("EXIT")
                else:
                    self._send_data_payload(OCC_EXIT_MESSAGE, now)
            else:
                # A stock server sends RESTART to every client when it shuts down (multi.c).
                self.send_control_message("RESTART,[N]" if notify == 2 else "RESTART")
        self._close(reason, restart=False, now=now)

    def link_lost(self, now: float, reason: str) -> None:
        """The transport lost the connection (TCP): end without a word, as a restart."""
        self._close(reason, restart=self.is_client, now=now)

    def kill(self, message: str | None, reason: str, now: float) -> None:
        """Server: end this client now (management `kill`), telling it `message` first."""
        if self.closed is not None:
            return
        if message:
            self.send_control_message(message)
        self._close(reason, restart=False, now=now)

    def _end(self, end: SessionEnd, now: float) -> None:
        self._close(end.reason, restart=end.restart, now=now)

    def _close(self, reason: str, *, restart: bool, now: float) -> None:
        if self.closed is not None:
            return
        self.closed = SessionClosed(reason, restart, self.peer_common_name, self.peer_id,
                                    self.remote_addr)
        self._events.append(self.closed)

    def release(self) -> None:
        """Forget the session: break the key states' callback cycle, so it is freed at once by
        reference counting instead of waiting for a full garbage collection (under a flood of
        expiring half-open sessions those piled up by the thousand)."""
        for key in (*self.keys, self.primary):
            if key is not None:
                key.on_remote_key = None

    @property
    def is_closed(self) -> bool:
        # A property, not `self.closed is not None` inline: handlers called in between may
        # close the session, which a type checker's narrowing cannot see.
        return self.closed is not None

    # -- the state machine behind every input --------------------------------------------

    def _service(self, now: float) -> None:
        if self.closed is not None:
            return
        push_server = self.push_server
        if push_server is not None and push_server.close_at is not None \
                and now >= push_server.close_at:
            self._close(push_server.refusal or "closing", restart=False, now=now)
            return
        if self.deferred_auth.expired(now):
            for auth_id in list(self.deferred_auth.pending):
                self.authorize(auth_id, False, "no client-auth verdict within hand-window",
                               None, now)
            return
        for key in list(self.keys):
            self._service_key(key, now)
            if self.is_closed:
                return
        self._expire_keys(now)
        if self.is_closed:
            return
        self._keepalive(now)
        self._maybe_renegotiate(now)

    def _service_key(self, key: KeyState, now: float) -> None:
        if key.phase is KeyPhase.ERROR:
            return
        if (key.handshake_done and not key.data_key_installed and self.cipher is not None
                and not self.deferred_auth.waiting(key.key_id)):
            self._install_data_key(key, now)
        for text in key.take_messages():
            self._handle_control_message(text, now)
        if key.phase is KeyPhase.ACTIVE:
            # Our KM2 was ACKed, so the peer has it and can derive the key: switch sending.
            new_key = self.ring.next_key(key.key_id)
            if new_key is not None:
                if self.ring.current is None or not self.is_client:
                    self._switch_send_key(new_key)
                elif self._send_switch_at is None:
                    # A client's renegotiation: the server derives the new key only once our
                    # ACK of its KM2 arrived (ssl.c: S_SENT_KEY -> S_ACTIVE on reliable_empty),
                    # and that ACK is never retransmitted. Keep sending on the current key
                    # (still valid there as the lame duck) until the server's first packet on
                    # the new one proves it has it (decrypt() switches then), or until the
                    # grace ends: a lost ACK costs a KM2 retransmit (2 s), not a stalled link.
                    self._send_switch_at = now + min(SEND_SWITCH_GRACE,
                                                     self.settings.tran_window / 4)
                elif now >= self._send_switch_at:
                    self._switch_send_key(new_key)
        if key.key_id != 0 or not key.handshake_done:
            return
        if self.push_client is not None:
            if self.push_client.request_due(now):
                key.send_message("PUSH_REQUEST")
        elif (self.push_server is not None and self.push_server.replied_at is None
              and self.iv_proto & IV_PROTO_REQUEST_PUSH):
            # The client announced REQUEST_PUSH: reply without waiting (multi.c).
            self._send_push_reply(key, now)

    # -- key states and renegotiation --------------------------------------------------------

    def _switch_send_key(self, new_key: DataCipherKey) -> None:
        self._send_switch_at = None
        new_state = self._key_state(new_key.key_id)
        began = new_state.started_at if new_state is not None else self.last_rx
        # The previous key stays valid for decryption until tran-window after the
        # renegotiation began (ssl.c: lame_duck_must_die), so no packet in flight is lost.
        if self.ring.rotate(new_key, began + self.settings.tran_window) and new_state is not None:
            self.primary = new_state

    def _retired(self, key: KeyState, now: float) -> bool:
        if (
            key is self.primary
            or key.phase is not KeyPhase.ACTIVE
            or self.ring.current is None
            or self.ring.in_use(key.key_id)
            or self.deferred_auth.waiting(key.key_id)  # new, waiting for client-auth
        ):
            return False
        if key.replaced_at is None:
            key.replaced_at = now
        return key.reliable.all_acked or now - key.replaced_at >= self.settings.hand_window

    def _key_state(self, key_id: int) -> KeyState | None:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None

    def _expire_keys(self, now: float) -> None:
        self.ring.expire(now)
        for key in list(self.keys):
            if self._retired(key, now):
                # A replaced key: its handshake state goes once its last control packets are
                # ACKed, or after hand-window if they never are (stock drops it at once); its
                # data key lives on as the lame duck until tran-window.
                self.keys.remove(key)
            elif key.phase is KeyPhase.ERROR or key.expired(now):
                reason = key.error or "TLS key negotiation failed to occur within hand-window"
                self.keys.remove(key)
                if key is self.primary and self.ring.current is None:
                    self._close(reason, restart=self.is_client, now=now)
                    return
        if (
            self.push_client is not None
            and self.push_client.pushed is None
            and self.ring.current is None
            and now - self.created_at >= self.settings.hand_window
        ):
            self._close("no reply from server to push requests", restart=True, now=now)

    def _keepalive(self, now: float) -> None:
        due = self.keepalive.due(now, self.last_rx, self.last_tx, self.ring.current is not None)
        if due is KeepaliveDue.RESTART:
            self._close("ping-restart: inactivity timeout", restart=self.is_client, now=now)
        elif due is KeepaliveDue.PING:
            self._send_data_payload(PING_MAGIC, now)

    def _maybe_renegotiate(self, now: float) -> None:
        primary = self.primary
        send_key = self.ring.current
        if primary is None or primary.phase is not KeyPhase.ACTIVE or send_key is None:
            self.rekey.clear()
            return
        if any(k is not primary and k.phase is not KeyPhase.ERROR for k in self.keys):
            self.rekey.clear()  # one renegotiation at a time
            return
        if self.rekey.due(primary.activated_at, now, send_key.needs_renegotiation):
            self.renegotiate(now)

    def renegotiate(self, now: float) -> bool:
        """Start a soft reset on the next key_id (either role may start one)."""
        primary = self.primary
        if primary is None or primary.phase is not KeyPhase.ACTIVE:
            return False
        key_id = next_key_id(primary.key_id)
        if self._key_state(key_id) is not None:
            return False
        self._start_soft_reset(key_id, now)
        self.rekey.clear()
        return True

    def _start_soft_reset(self, key_id: int, now: float) -> KeyState:
        self.ring.free_slot(key_id)  # an expired lame duck with the same id
        key = self._new_key_state(key_id, now)
        key.send_reset(Opcode.P_CONTROL_SOFT_RESET_V1)
        return key

    # -- control messages ------------------------------------------------------------------

    def _handle_control_message(self, text: str, now: float) -> None:
        keyword, _rest = classify_control_message(text)
        push_client, push_server = self.push_client, self.push_server
        try:
            if push_client is not None and keyword in push_client.KEYWORDS:
                applied = push_client.on_message(keyword, text, self.remote_cipher)
                if applied is not None:
                    self._apply_push(*applied, now)
            elif push_server is not None and keyword in push_server.KEYWORDS:
                if push_server.on_message(keyword):
                    key = self._control_key()
                    if key is not None:
                        self._send_push_reply(key, now)
            else:
                self._events.append(ControlMessageReceived(text, self.peer_id))
        except SessionEnd as end:
            self._end(end, now)

    def _send_push_reply(self, key: KeyState, now: float) -> None:
        """Server: the PUSH_REPLY, or AUTH_FAILED for a refused client (then linger)."""
        push = self.push_server
        assert push is not None
        if push.refusal is None:
            if self.deferred_auth.waiting(0):
                return  # the verdict is not in yet; the client asks again
            if not push.reply_wanted(now, self.cipher):
                return
            assert self.cipher is not None
            try:
                items = list(self._push_items(self)) if self._push_items is not None else []
            except HandshakeError as exc:
                push.refuse(str(exc))
            else:
                dynamic = bool(self.settings.dyn_tls_crypt
                               and self.iv_proto & IV_PROTO_DYN_TLS_CRYPT
                               and self._start_dynamic_tls_crypt())
                messages = push.build_reply(
                    items, cipher=self.cipher, tx_peer_id=self.tx_peer_id,
                    cc_exit=bool(self.iv_proto & IV_PROTO_CC_EXIT_NOTIFY),
                    dyn_tls_crypt=dynamic,
                    tun_mtu=self.settings.tun_mtu if "IV_MTU" in self.peer_info else None,
                )
                if messages is not None:
                    for message in messages:
                        key.send_message(message)
                    push.replied_at = now
                    return
        key.send_message(push.refusal_message())
        push.linger(now)

    def _apply_push(self, options: PushOptions, cipher: str, now: float) -> None:
        """Client: a whole PUSH_REPLY was accepted; apply what it says."""
        if options.compression is not None:
            self.comp = self._compression(options.compression)
        self.cipher = cipher
        self.tx_peer_id = options.peer_id
        if "dyn-tls-crypt" in options.protocol_flags and not (
                self.settings.dyn_tls_crypt and self._start_dynamic_tls_crypt()):
            self._close("server pushed dyn-tls-crypt, which we cannot do", restart=False,
                        now=now)
            return
        self.keepalive.apply_push(options.ping, options.ping_restart)
        self._events.append(PushApplied(options))
        key = self._key_state(0)
        if key is not None and key.handshake_done:
            self._install_data_key(key, now)

    # -- pings and OCC ---------------------------------------------------------------------

    def _send_data_payload(self, payload: bytes, now: float) -> None:
        """Seal a ping or OCC message; control-rate traffic, so copying out is fine."""
        send_key = self.ring.current
        if send_key is None:
            return
        scratch = self._scratch
        scratch.reset(_SCRATCH_HEADROOM)
        scratch.append(payload)
        if self.comp is not None:
            self.comp.frame(scratch)
        send_key.seal(scratch, self.tx_peer_id)
        self._data_out.append(bytes(scratch.data))
        self.last_tx = now

    def _handle_occ(self, payload: memoryview, now: float) -> None:
        kind = occ_kind(payload)
        if kind is OccKind.REQUEST:
            self._send_data_payload(occ_reply(self.settings.options_string), now)
        elif kind is OccKind.EXIT:
            self._close("peer exited (OCC_EXIT)", restart=self.is_client, now=now)

    # -- the peer's key-method 2 -----------------------------------------------------------

    def _on_remote_key(self, key: KeyState, remote: KeyMethod2) -> None:
        """The peer's KM2 arrived (called from inside the key state)."""
        self.peer_common_name = key.tls.peer_common_name
        if key.key_id == 0:
            # OCC: "[null-cipher]" is how stock writes `cipher none` (ssl.c key_method_2_read).
            remote_cipher = options_string_value(remote.options, "cipher")
            self.remote_cipher = "none" if remote_cipher == "[null-cipher]" else remote_cipher
        self._events.append(
            HandshakeComplete(
                key_id=key.key_id,
                peer_common_name=self.peer_common_name,
                tls_version=key.tls.version,
                renegotiation=key.key_id != 0,
                peer_id=self.peer_id,
            )
        )
        push = self.push_server
        if push is None:
            return
        if self.settings.username_as_common_name and remote.username:
            self.peer_common_name = remote.username  # ssl_verify.c: set_common_name()
        if self.settings.defer_auth:
            self._request_auth(key, remote)
        if key.key_id != 0:
            return
        self.peer_info = parse_peer_info(remote.peer_info or "")
        try:
            self.iv_proto = int(self.peer_info.get("IV_PROTO", "0"))
        except ValueError:
            self.iv_proto = 0
        cipher = negotiate_cipher(
            self.settings.data_ciphers,
            self.peer_info,
            fallback=self.settings.data_ciphers_fallback,
            remote_cipher=self.remote_cipher,
        )
        if cipher is None:
            # Stock answers the PUSH_REQUEST with AUTH_FAILED (ssl_ncp.c, push.c).
            push.refuse("Data channel cipher negotiation failed (no shared cipher)")
            return
        self.cipher = cipher
        if self.iv_proto & IV_PROTO_DATA_V2 and self.peer_id is not None:
            self.tx_peer_id = self.peer_id

    # -- deferred authentication (management-client-auth) -----------------------------------

    def _request_auth(self, key: KeyState, remote: KeyMethod2) -> None:
        if not remote.username or not remote.password:
            # As stock (ssl_verify.c) when the verdict is someone else's: credentials needed.
            raise HandshakeError("Auth Username/Password was not provided by peer")
        auth_id = self.deferred_auth.request(key.key_id, self.last_rx)
        self._events.append(AuthRequested(self.peer_id, auth_id, key.key_id != 0,
                                          remote.username, remote.password))

    def authorize(self, auth_id: int, approve: bool, reason: str, client_reason: str | None,
                  now: float) -> bool:
        """The verdict on a waiting key; False if nothing waits with that id."""
        key_id = self.deferred_auth.take(auth_id)
        push = self.push_server
        if key_id is None or self.closed is not None or push is None:
            return False
        self.deferred_auth.settled()
        if not approve:
            text = "AUTH_FAILED" + (f",{client_reason}" if client_reason else "")
            push.refuse(reason or "client-deny", text)
            key = self._control_key()
            if key is not None:
                key.send_message(text)
            push.close_at = now + AUTH_FAILED_LINGER
            return True
        self._service(now)  # installs the data key now allowed
        primary = self._key_state(0) if key_id == 0 else None
        if (primary is not None and primary.handshake_done and push.replied_at is None
                and (push.requested or self.iv_proto & IV_PROTO_REQUEST_PUSH)):
            self._send_push_reply(primary, now)
        return True

    def _install_data_key(self, key: KeyState, now: float) -> None:
        assert self.cipher is not None and key.remote_key is not None
        if self.auth_failed is not None:
            return
        client_key, server_key = (
            (key.local_key, key.remote_key) if self.is_client else (key.remote_key, key.local_key)
        )
        client_sid, server_sid = (
            (self.local_sid, self.remote_sid)
            if self.is_client
            else (self.remote_sid, self.local_sid)
        )
        assert client_key.pre_master is not None and client_sid and server_sid
        key2 = derive_key2(
            client_pre_master=client_key.pre_master,
            client_random1=client_key.random1,
            client_random2=client_key.random2,
            server_random1=server_key.random1,
            server_random2=server_key.random2,
            client_sid=client_sid,
            server_sid=server_sid,
        )
        try:
            data_key = make_data_key(
                cipher=self.cipher,
                auth=self.settings.auth,
                key2=key2,
                is_server=not self.is_client,
                key_id=key.key_id,
                replay=ReplayWindow(self.settings.replay_window, self.settings.replay_seconds),
                wall_time=int(now + self.settings.clock_offset),
            )
        except ValueError as exc:  # a cipher/digest no kind implements: never half-run
            self._close(f"cannot set up the data channel: {exc}", restart=False, now=now)
            return
        if self.ring.current is None:
            self._set_mss()
        # Once only: a retired key state must never bring its data key back after the lame
        # duck expired (that would switch sending back to an old key).
        key.data_key_installed = True
        if self.ring.install(data_key):
            self._events.append(DataChannelReady(key.key_id, self.cipher, self.tx_peer_id,
                                                 self.peer_id))


@functools.lru_cache(maxsize=64)
def _mss_clamps(
    cipher: str | None, auth: str, compression: str | None,
    link_framing: Callable[[FrameBuilder], None] | None, mssfix: int, outer_overhead: int,
    mode: MssfixMode,
) -> tuple[int, int]:
    """The IPv4 and IPv6 MSS clamps of one data-channel geometry. Every client of a server
    shares a handful of them, so they are computed once each, not per connecting client
    (building the frame twice was ~3 % of a server's CPU per handshake)."""
    frame = data_frame(cipher, auth=auth, compression=compression, link_framing=link_framing)
    v4, v6 = (mss_for(mssfix, frame, outer_overhead=outer_overhead, inner_ipv6=ipv6, mode=mode)
              for ipv6 in (False, True))
    return v4, v6


def _random_session_id() -> bytes:
    while True:
        sid = os.urandom(8)
        if any(sid):  # all zeros means "undefined" (session_id.h)
            return sid


__all__ = ["COMP_LZO_STUB_SIZE", "Session", "next_key_id"]
