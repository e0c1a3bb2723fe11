"""The control channel's TLS: `ssl.SSLObject` over two `ssl.MemoryBIO`s, plus OpenVPN's peer checks.

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

import contextlib
import hashlib
import os
import re
import ssl
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NoReturn

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tunnel.protocol.errors import ConfigError, HandshakeError
from tunnel.protocol.tls_ops import accept_any_chain, apply_tls_knobs, verify_peer_extras

__all__ = [
    "MAX_RECORD_PLAINTEXT",
    "PeerIdentity",
    "TlsSession",
    "TlsSettings",
    "make_context",
    "openvpn_subject",
    "verify_peer_certificate",
]

# The stock reader takes each control-channel message with one SSL_read() into a
# TLS_CHANNEL_BUF_SIZE (2048) buffer and parses that as the whole message, discarding any rest
# (ssl.c: key_method_2_read(), tls_process_state()). A TLS record could hold 16 KiB, but a
# longer message would reach a stock peer in two reads and be misparsed, so we refuse to write it.
MAX_RECORD_PLAINTEXT: Final = 2048

# TLS's own limit on one record's plaintext (2^14). Reading with this size returns exactly one
# record per SSL_read(), which is how the message boundaries above are recovered.
_TLS_MAX_PLAINTEXT: Final = 16384

# OpenVPN's TLS_USERNAME_LEN (ssl_verify.c): a longer CN fails "could not extract CN".
_CN_MAX_BYTES: Final = 64

_TLS_VERSIONS: Final = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
_REMOTE_CERT_TLS: Final = {
    "server": (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
    "client": (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth"),
}
_X509_NAME_TYPES: Final = frozenset({"subject", "name", "name-prefix"})


# A check on the peer's leaf certificate, given the peer's address when known; it raises
# HandshakeError to refuse the peer (crl-verify, tls-verify).
PeerCheck = Callable[[x509.Certificate, "tuple[str, int] | None"], None]


@dataclass(frozen=True)
class TlsSettings:
    """The TLS part of a tunnel's configuration, as PEM text (the config layer reads files).

    `verify_x509_name` is (name, type) with type "subject", "name" or "name-prefix", as in
    OpenVPN's `--verify-x509-name`. The key and its password are left out of the repr so the
    settings can be logged.
    """

    ca: str
    cert: str
    key: str = field(repr=False)
    remote_cert_tls: str | None = None
    verify_x509_name: tuple[str, str] | None = None
    tls_version_min: str = "1.2"
    tls_version_max: str | None = None
    key_password: str | None = field(default=None, repr=False)
    # Issue 11 TLS knobs (tls_ops.py) and checks the app layer adds (crl-verify, tls-verify):
    # each peer check gets the leaf certificate and raises HandshakeError to refuse it.
    tls_cipher: str | None = None
    tls_ciphersuites: str | None = None
    tls_groups: str | None = None
    ecdh_curve: str | None = None
    capath: str | None = None
    ns_cert_type: str | None = None
    remote_cert_ku: tuple[int, ...] = ()
    remote_cert_eku: str | None = None
    peer_checks: tuple[PeerCheck, ...] = field(default=(), repr=False)
    # peer-fingerprint: SHA-256 digests of the certificates the peer may present; without a CA
    # they replace the chain check (tls_ops.accept_any_chain), with one they add to it.
    peer_fingerprints: tuple[bytes, ...] = ()
    # Server: `verify-client-cert none|optional|require` (a client without a certificate
    # authenticates by username/password). Client: `cert`/`key` may be "" (auth-user-pass).
    verify_client_cert: str = "require"

    def __post_init__(self) -> None:
        if self.remote_cert_tls is not None and self.remote_cert_tls not in _REMOTE_CERT_TLS:
            raise ConfigError(
                f"remote-cert-tls must be 'server' or 'client', not {self.remote_cert_tls!r}"
            )
        if self.verify_x509_name is not None:
            name, kind = self.verify_x509_name
            if kind not in _X509_NAME_TYPES:
                raise ConfigError(
                    f"verify-x509-name type must be subject, name or name-prefix, not {kind!r}"
                )
            if not name:
                raise ConfigError("verify-x509-name needs a non-empty name")
        low = _tls_version("tls-version-min", self.tls_version_min)
        if self.tls_version_max is not None:
            high = _tls_version("tls-version-max", self.tls_version_max)
            if high < low:
                raise ConfigError(
                    f"tls-version-max {self.tls_version_max} is below "
                    f"tls-version-min {self.tls_version_min}"
                )


def make_context(settings: TlsSettings, *, server_side: bool) -> ssl.SSLContext:
    """An SSLContext configured like a stock OpenVPN 2.6 peer's, with our credentials loaded.

    Raises ConfigError naming the item ("ca", "cert", "key") when PEM text is unusable or the
    key does not belong to the certificate; never an ssl.SSLError.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    # OpenVPN verifies the chain against --ca and then checks names itself (verify-x509-name);
    # there is no hostname, and both sides must present a certificate (the stock server sets
    # SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT).
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    if server_side and settings.verify_client_cert != "require":
        ctx.verify_mode = (
            ssl.CERT_OPTIONAL if settings.verify_client_cert == "optional" else ssl.CERT_NONE
        )
    ctx.minimum_version = _tls_version("tls-version-min", settings.tls_version_min)
    ctx.maximum_version = (
        _tls_version("tls-version-max", settings.tls_version_max)
        if settings.tls_version_max is not None
        else ssl.TLSVersion.MAXIMUM_SUPPORTED
    )
    # Stock options (ssl_openssl.c: tls_ctx_set_options()): no tickets, no compression, no
    # TLS-level renegotiation; OpenVPN renegotiates with a new TLS session on a new key_id.
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if server_side:
        # TLS 1.3 sends NewSessionTicket messages unless told not to; nobody would use them.
        ctx.num_tickets = 0
    # Python offers no switch for OpenSSL's session cache. With OP_NO_TICKET an offered TLS 1.2
    # session ID misses (observed with OpenSSL 3.0), TLS 1.3 resumes only from tickets, our
    # client never offers a session, a stock client has its cache off, and TlsSession refuses
    # a resumed session anyway: every key gets a full handshake.

    pki_less = not settings.ca and not settings.capath and bool(settings.peer_fingerprints)
    ca_certs = (_parse_certificates("ca", settings.ca)
                if settings.ca or not (settings.capath or pki_less) else [])
    with_cert = bool(settings.cert) or server_side  # a client may have none (auth-user-pass)
    chain = _parse_certificates("cert", settings.cert) if with_cert else []
    if with_cert:
        key = _parse_private_key(settings.key, settings.key_password)
        if key.public_key() != chain[0].public_key():
            raise ConfigError("key: the private key does not belong to the certificate in 'cert'")

    try:
        if ca_certs:  # none when only `capath` names the CAs
            ctx.load_verify_locations(cadata="".join(_pem(c) for c in ca_certs))
    except ssl.SSLError as exc:
        raise ConfigError(f"ca: rejected by OpenSSL: {_ssl_reason(exc)}") from None
    if pki_less:
        accept_any_chain(ctx)
    apply_tls_knobs(ctx, tls_cipher=settings.tls_cipher, tls_ciphersuites=settings.tls_ciphersuites,
                    tls_groups=settings.tls_groups, ecdh_curve=settings.ecdh_curve,
                    capath=settings.capath)
    if with_cert:
        _load_cert_chain(ctx, "".join(_pem(c) for c in chain), settings.key,
                         settings.key_password)
    return ctx


@dataclass(frozen=True)
class PeerIdentity:
    """What the peer certificate says about the peer, in OpenVPN's formats."""

    common_name: str
    subject: str


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
                self._fail(f"TLS handshake failed: {_ssl_reason(exc)}")
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
            self._fail(f"TLS error after the handshake: {_ssl_reason(exc)}")
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
                self._fail(f"TLS write failed: {_ssl_reason(exc)}")
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


def verify_peer_certificate(
    der: bytes, settings: TlsSettings, peer_address: tuple[str, int] | None = None
) -> PeerIdentity:
    """OpenVPN's checks on the peer's leaf certificate (ssl_verify.c: verify_cert(),
    verify_peer_cert()), run after OpenSSL verified the chain. Raises HandshakeError.

    Order and semantics follow 2.6.14: the subject string and a CN are required, then
    remote-cert-tls (a keyUsage extension of any value plus the EKU), then verify-x509-name.
    Deliberately stricter than stock: an empty CN, or one with an embedded NUL (which stock C
    code would silently truncate), is refused.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        subject = openvpn_subject(cert.subject)
        common_name = _common_name(cert.subject)
        extensions = cert.extensions
    except Exception as exc:
        # The bytes come from the peer. OpenSSL accepted the chain, but cryptography is
        # stricter in places (e.g. DuplicateExtension is no ValueError); whatever it objects
        # to must end the handshake as a HandshakeError, never escape as something else.
        raise HandshakeError(
            f"could not parse the peer certificate: {type(exc).__name__}: {exc}"
        ) from None

    if not subject:
        raise HandshakeError(
            "VERIFY ERROR: could not extract X509 subject string from the peer certificate"
        )
    if common_name is None:
        raise HandshakeError(
            f"VERIFY ERROR: could not extract CN from X509 subject string ('{subject}') -- "
            f"note that the field length is limited to {_CN_MAX_BYTES} characters"
        )

    if settings.remote_cert_tls is not None:
        role = settings.remote_cert_tls
        eku_oid, eku_name = _REMOTE_CERT_TLS[role]
        # Stock only requires the keyUsage extension to exist (OPENVPN_KU_REQUIRED); OpenSSL's
        # purpose check has already judged its value.
        try:
            extensions.get_extension_for_class(x509.KeyUsage)
        except x509.ExtensionNotFound:
            raise HandshakeError(
                f"peer certificate lacks the keyUsage extension required by remote-cert-tls {role}"
            ) from None
        try:
            ekus = list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            ekus = []
        if eku_oid not in ekus:
            raise HandshakeError(
                f"peer certificate lacks EKU {eku_name} required by remote-cert-tls {role}"
            )

    if settings.verify_x509_name is not None:
        expected, kind = settings.verify_x509_name
        if kind == "subject" and subject != expected:
            raise HandshakeError(
                f"peer certificate subject '{subject}' does not match "
                f"verify-x509-name '{expected}' subject"
            )
        if kind == "name" and common_name != expected:
            raise HandshakeError(
                f"peer certificate CN '{common_name}' does not match "
                f"verify-x509-name '{expected}' name"
            )
        if kind == "name-prefix" and not common_name.startswith(expected):
            raise HandshakeError(
                f"peer certificate CN '{common_name}' does not start with "
                f"verify-x509-name '{expected}' name-prefix"
            )

    if settings.peer_fingerprints and hashlib.sha256(der).digest() not in \
            settings.peer_fingerprints:
        raise HandshakeError(
            "VERIFY ERROR: the peer certificate's SHA-256 fingerprint is not in peer-fingerprint")
    verify_peer_extras(cert, ns_cert_type=settings.ns_cert_type,
                       remote_cert_ku=settings.remote_cert_ku,
                       remote_cert_eku=settings.remote_cert_eku)
    for check in settings.peer_checks:
        check(cert, peer_address)
    return PeerIdentity(common_name=common_name, subject=subject)


def openvpn_subject(name: x509.Name) -> str:
    """`name` formatted the way OpenVPN 2.6 shows and compares it ("C=US, O=x, CN=server").

    That is OpenSSL's X509_NAME_print_ex() with XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN |
    ASN1_STRFLGS_UTF8_CONVERT | ASN1_STRFLGS_ESC_CTRL (ssl_verify_openssl.c:
    x509_get_subject()): RDNs in certificate order joined by ", ", multi-valued RDNs by " + ",
    OpenSSL short names (dotted OID when unknown), control characters as \\XX, backslash
    doubled, other characters as UTF-8. verify_cert() then applies string_mod_remap_name()
    and turns leading '-' into '_'; the latter can never fire, as the string starts with a
    field name. Note this is not RFC 4514 order, which is reversed.
    """
    rdns = (
        " + ".join(f"{_short_name(attr.oid)}={_escape_value(attr.value)}" for attr in rdn)
        for rdn in name.rdns
    )
    return _remap_name(", ".join(rdns))


# -- helpers ---------------------------------------------------------------------------------


def _tls_version(option: str, value: str) -> ssl.TLSVersion:
    try:
        return _TLS_VERSIONS[value]
    except KeyError:
        raise ConfigError(
            f"{option} must be one of {', '.join(_TLS_VERSIONS)}, not {value!r}"
        ) from None


def _common_name(name: x509.Name) -> str | None:
    """OpenVPN's username: the *last* CN in the subject (ssl_verify_openssl.c:
    extract_x509_field_ssl()), at most 64 UTF-8 bytes, control characters remapped."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[-1].value
    text = value if isinstance(value, str) else value.decode("latin-1")
    if not text or "\0" in text or len(text.encode("utf-8")) > _CN_MAX_BYTES:
        return None
    return _remap_name(text)


def _short_name(oid: x509.ObjectIdentifier) -> str:
    # Ask the OpenSSL that Python links against, so the names are exactly the ones a stock
    # peer's X509_NAME_print_ex() uses; OpenSSL prints the dotted OID for unknown types.
    try:
        return ssl._ASN1Object(oid.dotted_string).shortname
    except ValueError:
        return oid.dotted_string


def _escape_value(value: str | bytes) -> str:
    # Non-string attribute types are printed byte by byte by OpenSSL (one byte per character).
    text = value if isinstance(value, str) else value.decode("latin-1")
    out: list[str] = []
    for char in text:
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            out.append(f"\\{code:02X}")
        elif char == "\\":
            out.append("\\\\")
        else:
            out.append(char)
    return "".join(out)


def _remap_name(text: str) -> str:
    # string_mod(str, CC_PRINT, CC_CRLF, '_'): control characters and DEL become '_';
    # UTF-8 passes (char_class() counts every byte >= 32 except 127 as printable).
    return "".join("_" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)


def _parse_certificates(item: str, pem: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except ValueError:
        # In our words: the library's text is a parser's repr ("ParseError { kind: ... }").
        raise ConfigError(f"{item}: {_which_certificate_is_bad(pem)}") from None
    if not certs:  # the loader raises on no certificates; kept for clarity
        raise ConfigError(f"{item}: no PEM certificate found")
    return certs


_PEM_CERT = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S
)


def _which_certificate_is_bad(pem: str) -> str:
    blocks = _PEM_CERT.findall(pem)
    for number, block in enumerate(blocks, 1):
        try:
            x509.load_pem_x509_certificate(block.encode("utf-8"))
        except ValueError:
            which = f"certificate {number} of {len(blocks)}" if len(blocks) > 1 else (
                "the certificate")
            return (f"{which} is not a valid X.509 certificate (its base64 text is cut short, "
                    "altered or not a certificate)")
    if pem.count("-----BEGIN CERTIFICATE-----") != len(blocks):
        return "a '-----BEGIN CERTIFICATE-----' block has no matching END line"
    return "not valid PEM certificate text"


def _parse_private_key(pem: str, password: str | None) -> PrivateKeyTypes:
    # Messages are ours and chaining is cut (`from None`): nothing about the key material or
    # the password may reach an exception text or a traceback.
    data = pem.encode("utf-8")
    secret = password.encode("utf-8") if password is not None else None
    try:
        return serialization.load_pem_private_key(data, password=secret)
    except TypeError:
        # Either an encrypted key without a password, or a password for a clear key.
        if secret is None:
            raise ConfigError(
                "key: the private key is encrypted and no key password was given"
            ) from None
    except ValueError:
        raise ConfigError(
            "key: not a usable PEM private key, or the key password is wrong"
        ) from None
    except UnsupportedAlgorithm:
        raise ConfigError("key: unsupported private key type") from None
    # A password for a clear key is harmless (stock OpenVPN ignores it too).
    return _parse_private_key(pem, None)


def _load_cert_chain(
    ctx: ssl.SSLContext, chain_pem: str, key_pem: str, password: str | None
) -> None:
    """SSLContext.load_cert_chain() reads only files: write the PEM to private temporary files.

    The directory comes from mkdtemp (0700) and the files are created 0600, on tmpfs
    (/dev/shm) when there is one so the key never reaches persistent storage; both are removed
    in `finally`. This is the one file-system access of the protocol layer, forced by `ssl`.
    """
    root = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    directory = tempfile.mkdtemp(prefix="pyovpn-tls-", dir=root)
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    try:
        _write_private(cert_path, chain_pem)
        _write_private(key_path, key_pem)
        ctx.load_cert_chain(cert_path, key_path, password=password)
    except ssl.SSLError as exc:
        # Reached only for what cryptography accepted but OpenSSL's policy refuses, e.g. a key
        # below the security level ("ee key too small"). OpenSSL names no key material here.
        raise ConfigError(f"cert/key: rejected by OpenSSL: {_ssl_reason(exc)}") from None
    finally:
        for path in (cert_path, key_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.rmdir(directory)


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


# "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ... (_ssl.c:1006)"
_SSL_MESSAGE = re.compile(r"^(?:\[[^\]]*\]\s*)?(?P<text>.*?)(?:\s*\(_ssl\.c:\d+\))?$", re.S)


def _ssl_reason(exc: ssl.SSLError) -> str:
    """The human part of an ssl error, on one line, without the library's decorations."""
    raw = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc)
    match = _SSL_MESSAGE.match(raw)
    text = match.group("text") if match else raw
    text = " ".join(text.split())
    return text or type(exc).__name__
