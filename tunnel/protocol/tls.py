"""The control channel's TLS session (one per key_id): `ssl.SSLObject` over two `ssl.MemoryBIO`s.

OpenVPN carries TLS records as an opaque byte stream inside P_CONTROL_V1 payloads
(OPENVPN-WIRE.md section 5). This module never touches a socket: the key state feeds the
reassembled control payloads in (`feed`), drives the handshake (`step`), and drains the
ciphertext to send (`take_outgoing`) after *every* call, because OpenSSL leaves bytes in the
outgoing BIO whenever it makes progress (the client's Finished sits there after the handshake).

Ordering rules a caller must know (the first two were verified against a stock 2.6.14 peer,
OPENVPN-WIRE.md section 5; the last two follow from OpenSSL and Python's `ssl` and are
exercised in memory by tests/protocol/test_tls.py):

* Writing before the handshake completes. `SSLObject.write()` cannot do that: it starts or
  continues the handshake implicitly and raises `SSLWantReadError` (and would emit a
  ClientHello from inside `write`). So `TlsSession.write()` queues the record and `step()`
  writes the queue right after the handshake completed and the peer passed the checks. A stock
  client writes its KM2 early in the same way; with TLS 1.3 the client's handshake completes as
  it writes its Finished, so the queued KM2 lands in the outgoing BIO directly behind the
  Finished, in the same flight. With TLS 1.2 the client completes only after the server's
  Finished, so its KM2 goes out one flight later. Nothing is ever sent to an unverified peer.
* Reading right after completion. With TLS 1.3 the server's handshake completes on the same
  input that carries the client's KM2, so once `step()` returns True call `read_record()` (or
  `read()`) before waiting for more input.
* Client-side completion is not acceptance. A TLS 1.3 client completes before the server has
  looked at the client certificate; a rejection arrives later as an alert, which the next
  `read_record()` reports as `HandshakeError`.
* Our peer checks (CN, remote-cert-tls, verify-x509-name) run when the handshake has completed;
  Python's `ssl` has no verify callback to run them inside it. A rejected stock peer therefore
  gets no TLS alert from those checks and notices only when its handshake window expires.

One `TlsSession` serves one key_id. Renegotiation in OpenVPN is a full new TLS session on a new
key_id, never TLS-level renegotiation or resumption; make a new `TlsSession` each time.
"""

from __future__ import annotations

import ssl
from collections import deque
from typing import Final, NoReturn

from tunnel.protocol.errors import HandshakeError
from tunnel.protocol.tls_context import ssl_reason
from tunnel.protocol.tls_settings import TlsSettings
from tunnel.protocol.x509_checks import PeerIdentity, verify_peer_certificate

__all__ = ["MAX_RECORD_PLAINTEXT", "TlsSession"]

# The stock reader takes each control-channel message with one SSL_read() into a
# TLS_CHANNEL_BUF_SIZE (2048) buffer and parses that as the whole message, discarding any rest
# (ssl.c: key_method_2_read(), tls_process_state()). A TLS record could hold 16 KiB, but a
# longer message would reach a stock peer in two reads and be misparsed, so we refuse to write it.
MAX_RECORD_PLAINTEXT: Final = 2048

# TLS's own limit on one record's plaintext (2^14). Reading with this size returns exactly one
# record per SSL_read(), which is how the message boundaries above are recovered.
_TLS_MAX_PLAINTEXT: Final = 16384

class TlsSession:
    """One TLS session of the control channel (one key_id), driven without I/O.

    Every method except `take_outgoing` raises HandshakeError once the session has failed, and
    nothing but HandshakeError escapes `feed`, `step`, `read_record` and `read` (ValueError from
    `write` means the caller passed an unusable record). After a failure `take_outgoing` may
    still hold a TLS alert; sending it lets a stock peer log why.
    """

    def __init__(
        self, context: ssl.SSLContext, *, server_side: bool, settings: TlsSettings,
        peer_address: tuple[str, int] | None = None,
    ) -> None:
        self._peer_address = peer_address  # handed to TlsSettings.peer_checks
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side)
        self._server_side = server_side
        self._settings = settings
        self._complete = False
        self._closed = False
        self._failure: str | None = None
        self._peer: PeerIdentity | None = None
        # Records written before the handshake completed (see the module docstring), or that
        # OpenSSL asked to retry; each entry becomes exactly one TLS record, in order.
        self._queued: deque[bytes] = deque()

    # -- state ------------------------------------------------------------------------------

    @property
    def handshake_complete(self) -> bool:
        """True once the handshake finished and the peer certificate passed our checks."""
        return self._complete

    @property
    def closed(self) -> bool:
        """True once the peer sent close_notify (OpenVPN itself never does); later writes
        are dropped and `read_record` returns b""."""
        return self._closed

    @property
    def failure(self) -> str | None:
        """The reason this session failed, or None."""
        return self._failure

    @property
    def peer_common_name(self) -> str | None:
        """The peer certificate's CN (OpenVPN's username), once the handshake is complete."""
        return self._peer.common_name if self._peer is not None else None

    @property
    def peer_subject(self) -> str | None:
        """The peer certificate's subject in OpenVPN's format, once the handshake is complete."""
        return self._peer.subject if self._peer is not None else None

    @property
    def version(self) -> str | None:
        """The negotiated protocol ("TLSv1.3"), once the handshake is complete."""
        return self._ssl.version() if self._complete else None

    def export_keying_material(self, label: bytes, length: int) -> bytes | None:
        """RFC 5705 keying material of the completed session (tunnel/protocol/ekm.py), or
        None when it cannot be exported."""
        if not self._complete:
            return None
        from tunnel.protocol.ekm import export_keying_material

        return export_keying_material(self._ssl, label, length)

    # -- input ------------------------------------------------------------------------------

    def feed(self, ciphertext: bytes) -> None:
        """Queue ciphertext from reassembled control payloads; `step`/`read_record` consume it."""
        self._raise_if_failed()
        self._incoming.write(ciphertext)

    def step(self) -> bool:
        """Drive the handshake as far as the input allows; True once it is complete.

        On completion this checks the peer certificate and then writes the records queued by
        `write`. Call `read_record` right after it first returns True (TLS 1.3: the client's
        KM2 came with its Finished), and drain `take_outgoing` after every call.
        """
        self._raise_if_failed()
        if not self._complete:
            try:
                self._ssl.do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return False
            except ssl.SSLError as exc:
                self._fail(f"TLS handshake failed: {ssl_reason(exc)}")
            self._peer = self._check_peer()
            self._complete = True
        self._write_queued()
        return True

    def read_record(self) -> bytes:
        """The plaintext of the next complete TLS record, or b"" when there is none.

        One call returns one record, the unit the stock reader treats as one message (KM2 or
        one control message). Returns b"" before the handshake is complete, so no plaintext
        from an unverified peer ever comes out.
        """
        self._raise_if_failed()
        if not self._complete or self._closed:
            return b""
        try:
            record = self._ssl.read(_TLS_MAX_PLAINTEXT)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            record = b""
        except ssl.SSLZeroReturnError:
            self._closed = True
            record = b""
        except ssl.SSLError as exc:
            self._fail(f"TLS error after the handshake: {ssl_reason(exc)}")
        else:
            # SSLObject.read reports close_notify as an empty result rather than raising;
            # OpenSSL skips empty application-data records, so b"" here means closed.
            if not record:
                self._closed = True
        self._write_queued()
        return record

    def read(self) -> bytes:
        """All plaintext currently available (record boundaries lost; see `read_record`)."""
        parts: list[bytes] = []
        while record := self.read_record():
            parts.append(record)
        return b"".join(parts)

    # -- output -----------------------------------------------------------------------------

    def write(self, plaintext: bytes) -> None:
        """Send `plaintext` as exactly one TLS record (one SSLObject.write call).

        Allowed before the handshake completes: the record is queued and written by the
        `step` that completes the handshake (see the module docstring).
        """
        size = len(plaintext)
        if size == 0:
            raise ValueError("refusing to write an empty TLS record: it carries no message")
        if size > MAX_RECORD_PLAINTEXT:
            raise ValueError(
                f"a control-channel record holds at most {MAX_RECORD_PLAINTEXT} bytes, got "
                f"{size}: the stock reader takes one message per 2048-byte SSL_read()"
            )
        self._raise_if_failed()
        self._queued.append(bytes(plaintext))
        if self._complete:
            self._write_queued()

    def take_outgoing(self) -> bytes:
        """All ciphertext produced so far, to be sent in P_CONTROL_V1 payloads."""
        return self._outgoing.read()

    # -- internals --------------------------------------------------------------------------

    def _write_queued(self) -> None:
        while self._queued and not self._closed:
            record = self._queued[0]
            try:
                written = self._ssl.write(record)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                # OpenSSL wants this same record again later; it stays first in the queue
                # (Python sets SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, so the copy is fine).
                return
            except ssl.SSLError as exc:
                self._fail(f"TLS write failed: {ssl_reason(exc)}")
            if written != len(record):  # Python does not enable partial writes; be sure
                self._fail(f"TLS write failed: only {written} of {len(record)} bytes taken")
            self._queued.popleft()

    def _check_peer(self) -> PeerIdentity:
        if self._server_side and self._ssl.session_reused:
            self._fail(
                "TLS handshake failed: the peer resumed an earlier TLS session; OpenVPN needs "
                "a full handshake with a certificate for every key"
            )
        der = self._ssl.getpeercert(binary_form=True)
        if not der and self._server_side and self._settings.verify_client_cert != "require":
            # verify-client-cert none/optional: no certificate, no CN; the username decides.
            return PeerIdentity("", "")
        if not der:  # CERT_REQUIRED makes this unreachable; checked anyway, it is cheap
            self._fail("TLS handshake failed: the peer presented no certificate")
        if self._server_side and self._settings.verify_client_cert == "none":
            return PeerIdentity("", "")  # stock does not look at a certificate it did not ask for
        try:
            return verify_peer_certificate(der, self._settings, self._peer_address)
        except HandshakeError as exc:
            self._fail(str(exc))

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise HandshakeError(self._failure)

    def _fail(self, reason: str) -> NoReturn:
        self._failure = reason
        self._queued.clear()
        raise HandshakeError(reason)
