"""One key_id's handshake: reliability layer + TLS session + key-method-2 exchange.

OpenVPN keeps a `key_state` per key_id (ssl_common.h). Each has its own reliability state (message
pids restart at 0), its own TLS session (renegotiation is a *new* TLS session, never TLS-level
renegotiation), and exchanges exactly one key-method-2 record each way. The phases follow
`ssl.c: tls_process_state()`:

  PRE_START  our reset (hard or soft, pid 0) is queued and not yet ACKed
  START      our reset was ACKed; TLS runs (the client writes its KM2 at once, as stock does)
  ACTIVE     both KM2 records exchanged and everything we sent was ACKed
  ERROR      the handshake failed; the owner discards this key state

This object never decides policy (cipher choice, authorization): it hands the peer's KM2 to its
owner through `on_remote_key` and carries on when told to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from enum import IntEnum

from core import BufferPool
from tunnel.protocol.codec import ControlPacket
from tunnel.protocol.constants import Opcode
from tunnel.protocol.errors import HandshakeError, ProtocolError
from tunnel.protocol.keymethod2 import KeyMethod2, decode_key_method2, encode_key_method2
from tunnel.protocol.messages import ControlMessageReader, encode_control_message
from tunnel.protocol.reliability import ReliableLayer, Seal
from tunnel.protocol.tls import TlsSession

_RESET_OPCODES = frozenset(
    {
        Opcode.P_CONTROL_HARD_RESET_CLIENT_V2,
        Opcode.P_CONTROL_HARD_RESET_CLIENT_V3,
        Opcode.P_CONTROL_HARD_RESET_SERVER_V2,
        Opcode.P_CONTROL_SOFT_RESET_V1,
    }
)


class KeyPhase(IntEnum):
    PRE_START = 1
    START = 2
    ACTIVE = 3
    ERROR = 4


class KeyState:
    """The handshake of one key_id, sans-I/O."""

    def __init__(
        self,
        *,
        key_id: int,
        is_client: bool,
        local_sid: bytes,
        remote_sid: bytes | None,
        tls: TlsSession,
        local_key: KeyMethod2,
        now: float,
        hand_window: float,
        tls_timeout: float,
        max_datagram: int,
        control_pool: BufferPool | None = None,
    ) -> None:
        self.key_id = key_id
        self.is_client = is_client
        self.tls = tls
        self.local_key = local_key
        self.remote_key: KeyMethod2 | None = None
        self.reliable = ReliableLayer(
            key_id=key_id,
            local_sid=local_sid,
            initial_timeout=tls_timeout,
            max_datagram=max_datagram,
            pool=control_pool,
        )
        self.reliable.remote_sid = remote_sid
        self.phase = KeyPhase.PRE_START
        self.started_at = now
        self.deadline = now + hand_window
        self.activated_at: float | None = None
        self.replaced_at: float | None = None  # when a newer key took over sending
        self.data_key_installed = False
        self.local_key_sent = False
        self.error: str | None = None
        self.messages = ControlMessageReader()
        self.inbox: list[str] = []
        # Set by the owner: called with the peer's KM2 once it arrives. A server uses it to
        # negotiate the cipher; raising HandshakeError refuses the peer.
        self.on_remote_key: Callable[[KeyState, KeyMethod2], None] | None = None

    # -- starting ------------------------------------------------------------------------

    def send_reset(self, opcode: Opcode) -> None:
        """Queue our hard or soft reset as message pid 0 (it has an empty payload)."""
        self.reliable.queue(opcode)

    def skip_reset_exchange(self) -> None:
        """Server side of the HMAC-cookie path: both resets count as exchanged already."""
        self.reliable.skip_to(next_send_pid=1, next_recv_pid=1)
        self.phase = KeyPhase.START

    # -- input -----------------------------------------------------------------------------

    def receive(self, packet: ControlPacket, now: float) -> None:
        """Feed one parsed control packet of this key_id. Raises ProtocolError/HandshakeError."""
        if self.phase is KeyPhase.ERROR:
            return
        if self.reliable.remote_sid is None:
            self.reliable.remote_sid = packet.session_id
        elif packet.session_id != self.reliable.remote_sid:
            raise ProtocolError("control packet from another session id")
        self.reliable.receive(packet, now)
        # The ACK of our reset often rides on the peer's first TLS packet: apply it first.
        self._start_if_reset_acked()
        for opcode, payload in self.reliable.pop_received():
            if opcode == Opcode.P_CONTROL_V1:
                if self.phase is KeyPhase.PRE_START:
                    # The peer cannot send TLS before it saw our reset; a stock peer never does.
                    raise ProtocolError("TLS data before the reset exchange completed")
                self.tls.feed(payload)
            elif opcode not in _RESET_OPCODES:
                raise ProtocolError(f"unexpected {opcode.name} on key_id {self.key_id}")
        self.advance(now)

    def advance(self, now: float) -> None:
        """Move the handshake on as far as the current input allows."""
        if self.phase is KeyPhase.ERROR:
            return
        try:
            self._advance(now)
        except HandshakeError as exc:
            # OpenSSL may have written an alert (unknown CA, bad certificate): send it, so the
            # peer learns why at once instead of at its hand-window.
            self._flush_alert()
            self.fail(str(exc))
            raise

    def _flush_alert(self) -> None:
        with contextlib.suppress(HandshakeError, ProtocolError, ValueError):
            self._flush_tls()

    def _start_if_reset_acked(self) -> None:
        if self.phase is KeyPhase.PRE_START and self.reliable.all_acked:
            self.phase = KeyPhase.START
            if self.is_client:
                # A stock client writes its KM2 before the handshake ends, so with TLS 1.3 it
                # travels in the same flight as the client Finished (ssl.c: key_method_2_write).
                self._send_local_key()

    def _advance(self, now: float) -> None:
        self._start_if_reset_acked()
        if self.phase < KeyPhase.START:
            return
        if self.tls.step():
            self._read_plaintext()
        self._flush_tls()
        if (
            self.phase is KeyPhase.START
            and self.local_key_sent
            and self.remote_key is not None
            and self.reliable.all_acked
        ):
            self.phase = KeyPhase.ACTIVE
            self.activated_at = now

    def _read_plaintext(self) -> None:
        while True:
            record = self.tls.read_record()
            if not record:
                return
            if self.remote_key is None:
                # The first record is the whole KM2; stock reads it with one SSL_read and
                # discards any rest (ssl.c: key_method_2_read).
                self.remote_key = decode_key_method2(record, from_client=not self.is_client)
                if self.on_remote_key is not None:
                    self.on_remote_key(self, self.remote_key)
                if not self.is_client:
                    # A stock server writes its KM2 only after reading the client's.
                    self._send_local_key()
                continue
            self.inbox.extend(self.messages.feed(record))

    def _send_local_key(self) -> None:
        if self.local_key_sent:
            return
        self.tls.write(encode_key_method2(self.local_key, from_client=self.is_client))
        self.local_key_sent = True
        # Sent: the password (or auth-token) is not needed again. A Python str cannot be
        # wiped, so dropping the last reference is what we can do (stock's purge_user_pass()).
        self.local_key.password = None
        self._flush_tls()

    def _flush_tls(self) -> None:
        data = self.tls.take_outgoing()
        if not data:
            return
        # Chunk boundaries have nothing to do with TLS records (ssl.c:
        # write_outgoing_tls_ciphertext); the peer concatenates payloads in pid order.
        chunk = self.reliable.max_payload()
        for start in range(0, len(data), chunk):
            self.reliable.queue(Opcode.P_CONTROL_V1, data[start : start + chunk])

    # -- output ----------------------------------------------------------------------------

    def send_message(self, text: str) -> None:
        """Send one control-channel message: one TLS write, NUL-terminated (forward.c)."""
        if self.phase is KeyPhase.ERROR:
            return
        self.tls.write(encode_control_message(text))
        self._flush_tls()

    def take_messages(self) -> list[str]:
        messages, self.inbox = self.inbox, []
        return messages

    def datagrams_to_send(self, now: float, seal: Seal | None = None) -> list[bytes]:
        # Also in ERROR: what is queued then is the TLS alert explaining the failure.
        return self.reliable.datagrams_to_send(now, seal)

    def next_deadline(self) -> float | None:
        if self.phase is KeyPhase.ERROR:
            return None
        deadline = self.reliable.next_deadline()
        if self.phase is not KeyPhase.ACTIVE:
            deadline = self.deadline if deadline is None else min(deadline, self.deadline)
        return deadline

    def expired(self, now: float) -> bool:
        """True when the handshake missed hand-window (ssl.c: 'TLS key negotiation failed')."""
        return self.phase is not KeyPhase.ACTIVE and now >= self.deadline

    def fail(self, reason: str) -> None:
        self.phase = KeyPhase.ERROR
        self.error = reason

    @property
    def handshake_done(self) -> bool:
        return self.local_key_sent and self.remote_key is not None
