"""TLS knobs handed to OpenSSL, and the extra peer checks, with stock OpenVPN 2.6's meaning.

* `tls-cipher`: OpenSSL names, or OpenVPN's '-' spelling of the IANA names, translated as
  stock's `convert_tls_list_to_openssl()` does (unknown names pass through to OpenSSL, which
  then decides); `tls-ciphersuites` (TLS 1.3) with '-' turned into '_';
  `tls-groups` / `ecdh-curve` (secp256r1 is spelt prime256v1 for OpenSSL, as stock does).
  Python's `ssl` has no call for TLS 1.3 suites or group lists, so those two go to OpenSSL's
  `SSL_CTX_set_ciphersuites` / `SSL_CTX_set1_groups_list` through ctypes, on the very
  `SSL_CTX` the `ssl.SSLContext` wraps (CPython keeps that pointer right after the object
  header). Anything OpenSSL refuses is a ConfigError: a TLS restriction that cannot be
  applied never becomes no restriction.
* `capath`: a hashed directory of CAs and CRLs; CRLs found there are checked for the chain.
* `ns-cert-type`, `remote-cert-ku`, `remote-cert-eku`: checks on the peer's leaf certificate,
  raising HandshakeError (see `verify_peer_extras`).
"""

from __future__ import annotations

import ctypes
import os
import re
import ssl
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from tunnel.protocol.errors import ConfigError, HandshakeError
from tunnel.protocol.tls_names import OPENSSL_BY_IANA

__all__ = [
    "accept_any_chain",
    "apply_tls_knobs",
    "openssl_cipher_list",
    "prebuild_cert_chain",
    "session_cache_off",
    "verify_peer_extras",
]

# ssl.h: these SSL_CTX_* calls are macros over SSL_CTX_ctrl() with these commands.
_SSL_CTRL_SET_GROUPS_LIST = 92  # SSL_CTX_set1_groups_list()
_SSL_CTRL_SET_SESS_CACHE_MODE = 44  # SSL_CTX_set_session_cache_mode()
_SSL_CTRL_BUILD_CERT_CHAIN = 105  # SSL_CTX_build_cert_chain()
_SSL_SESS_CACHE_OFF = 0
# SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR | SSL_BUILD_CHAIN_FLAG_CLEAR_ERROR: keep the chain even
# where it does not verify, as the automatic chain does (ssl_add_cert_chain() ignores the
# verification result and sends what was found).
_BUILD_CHAIN_AS_AUTOMATIC = 0x8 | 0x10


def openssl_cipher_list(openvpn_list: str) -> str:
    """`tls-cipher` as OpenSSL's cipher string."""
    out = []
    for name in openvpn_list.split(":"):
        iana = name.replace("-", "_")
        out.append(OPENSSL_BY_IANA.get(iana, name))
    return ":".join(out)


def _libssl() -> ctypes.CDLL:
    import _ssl  # the extension module: dlsym through it finds the libssl it is linked to

    return ctypes.CDLL(_ssl.__file__)


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    # PySSLContext: PyObject_HEAD (refcount, type), then SSL_CTX *ctx (Modules/_ssl.c).
    value = ctypes.c_void_p.from_address(id(ctx) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    if not value:
        raise ConfigError("cannot reach OpenSSL's SSL_CTX to apply the TLS options")
    return value


def _set_ciphersuites(ctx: ssl.SSLContext, suites: str) -> bool:
    lib = _libssl()
    func = lib.SSL_CTX_set_ciphersuites
    func.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    func.restype = ctypes.c_int
    ok = bool(func(_ssl_ctx_pointer(ctx), suites.encode()) == 1)
    if not ok:
        lib.ERR_clear_error()  # leave no stale error for Python's next ssl call
    return ok


def _ctx_ctrl(ctx: ssl.SSLContext, command: int, larg: int, parg: object = None) -> int:
    """SSL_CTX_ctrl(); an error it leaves is cleared (none stale for Python's next call)."""
    lib = _libssl()
    func = lib.SSL_CTX_ctrl
    func.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    func.restype = ctypes.c_long
    result = int(func(_ssl_ctx_pointer(ctx), command, larg, parg))
    lib.ERR_clear_error()
    return result


def _set_groups(ctx: ssl.SSLContext, groups: str) -> bool:
    return _ctx_ctrl(ctx, _SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.c_char_p(groups.encode())) == 1


def session_cache_off(ctx: ssl.SSLContext) -> None:
    """No session cache, as stock (tls_ctx_set_options(): SSL_SESS_CACHE_OFF).

    Python leaves a server context's cache on: every full TLS 1.2 handshake would add its
    session (up to 20480, never resumed: tickets are off, our client offers none, a stock
    client has its cache off, and TlsSession refuses a resumed session)."""
    _ctx_ctrl(ctx, _SSL_CTRL_SET_SESS_CACHE_MODE, _SSL_SESS_CACHE_OFF)


def prebuild_cert_chain(ctx: ssl.SSLContext) -> bool:
    """Build our certificate's chain from the trusted CAs once, now, instead of per handshake.

    For a `cert` that holds only our own certificate OpenSSL builds the chain it sends (our
    certificate and its CAs from `ca`) on every handshake: a chain verification of our own
    certificate (ssl_add_cert_chain(), ~0.15 ms of the server's CPU per handshake with
    OpenSSL 3.0). Built once here it is the same chain, and the same bytes on the wire; the
    call only fills the certificate's chain, exactly what the automatic chain fills per
    handshake. Call it only where the CAs cannot change under a running context (not with
    `capath`, whose directory OpenSSL reads at each lookup) and where `cert` had no chain
    of its own (then OpenSSL builds none). False (the automatic chain stays) when OpenSSL
    refuses, e.g. a CA below the security level: the handshake then fails as before."""
    return _ctx_ctrl(ctx, _SSL_CTRL_BUILD_CERT_CHAIN, _BUILD_CHAIN_AS_AUTOMATIC) > 0


# peer-fingerprint without a CA (2.6's PKI-less mode): OpenSSL still asks for and parses the
# peer's certificate, but its chain cannot verify against nothing; stock's verify callback then
# lets it through (verify_hash_no_ca) and compares the SHA-256 fingerprint instead, which
# verify_peer_certificate does here. The callback object must outlive every context using it.
_VERIFY_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_ACCEPT_CHAIN = _VERIFY_CALLBACK_TYPE(lambda preverify_ok, store_ctx: 1)
_SSL_VERIFY_PEER_REQUIRED = 0x01 | 0x02  # SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT


def accept_any_chain(ctx: ssl.SSLContext) -> None:
    """Request the peer's certificate but leave judging it to the fingerprint check."""
    func = _libssl().SSL_CTX_set_verify
    func.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK_TYPE]
    func.restype = None
    func(_ssl_ctx_pointer(ctx), _SSL_VERIFY_PEER_REQUIRED, _ACCEPT_CHAIN)


def _groups_for_openssl(groups: str) -> str:
    return ":".join("prime256v1" if g == "secp256r1" else g for g in groups.split(":"))


def apply_tls_knobs(
    ctx: ssl.SSLContext, *, tls_cipher: str | None, tls_ciphersuites: str | None,
    tls_groups: str | None, ecdh_curve: str | None, capath: str | None,
) -> None:
    """Restrict `ctx` as the options say; ConfigError naming the option when OpenSSL says no."""
    if tls_cipher is not None:
        translated = openssl_cipher_list(tls_cipher)
        try:
            ctx.set_ciphers(translated)
        except ssl.SSLError:
            raise ConfigError(
                f"tls-cipher: OpenSSL accepts none of {tls_cipher!r} (as {translated!r})"
            ) from None
    if tls_ciphersuites is not None:
        suites = tls_ciphersuites.replace("-", "_")
        if not _set_ciphersuites(ctx, suites):
            raise ConfigError(f"tls-ciphersuites: OpenSSL refuses {tls_ciphersuites!r}")
    groups = tls_groups if tls_groups is not None else ecdh_curve
    if groups is not None:
        which = "tls-groups" if tls_groups is not None else "ecdh-curve"
        if not _set_groups(ctx, _groups_for_openssl(groups)):
            raise ConfigError(f"{which}: OpenSSL refuses the group(s) {groups!r}")
    if capath is not None:
        try:
            ctx.load_verify_locations(capath=capath)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"capath: cannot use {capath}: {exc}") from None
        # Stock turns CRL checking on for capath and then ignores "unable to get certificate
        # CRL" in its verify callback, which Python's ssl does not let us have: we turn it on
        # only when the directory holds CRLs (c_rehash's HASH.rN names), so a capath without
        # CRLs works as in stock, and one with CRLs is checked (a CA without a CRL then fails).
        if _holds_crls(capath):
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_CRL_CHECK_CHAIN


def _holds_crls(directory: str) -> bool:
    try:
        names = os.listdir(directory)
    except OSError:
        return False
    return any(re.fullmatch(r"[0-9a-f]{8}\.r[0-9]+", name) for name in names)


# -- peer checks -----------------------------------------------------------------------------

# Netscape cert type bits (RFC-less, OpenSSL's NS_SSL_CLIENT / NS_SSL_SERVER).
_NS_CERT_TYPE = ObjectIdentifier("2.16.840.1.113730.1.1")
_NS_SSL_CLIENT, _NS_SSL_SERVER = 0x80, 0x40

# keyUsage bits in stock's numbering (x509_verify_cert_ku(): bit i of the BIT STRING -> 1<<(7-i),
# decipherOnly as 0x8000).
_KU_BITS = (
    ("digital_signature", 0x80), ("content_commitment", 0x40), ("key_encipherment", 0x20),
    ("data_encipherment", 0x10), ("key_agreement", 0x08), ("key_cert_sign", 0x04),
    ("crl_sign", 0x02),
)

# OpenSSL's long and short names of the EKUs people write in remote-cert-eku.
_EKU_NAMES: dict[str, ObjectIdentifier] = {
    "TLS Web Server Authentication": ExtendedKeyUsageOID.SERVER_AUTH,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "TLS Web Client Authentication": ExtendedKeyUsageOID.CLIENT_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "Code Signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "E-mail Protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "Time Stamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSP Signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}


def _key_usage_value(cert: x509.Certificate) -> int | None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    value = 0
    for attr, bit in _KU_BITS:
        if getattr(ku, attr):
            value |= bit
    if ku.key_agreement:
        if ku.encipher_only:
            value |= 0x01
        if ku.decipher_only:
            value |= 0x8000
    if value & 0xFF == 0:
        value >>= 8  # stock's "fixup if no LSB bits"
    return value


def _ekus(cert: x509.Certificate) -> list[ObjectIdentifier] | None:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def _ns_type_bits(cert: x509.Certificate) -> int | None:
    try:
        raw = cert.extensions.get_extension_for_oid(_NS_CERT_TYPE).value
    except x509.ExtensionNotFound:
        return None
    data = raw.value if isinstance(raw, x509.UnrecognizedExtension) else b""
    # DER BIT STRING: 03 len unused-bits first-byte...
    return data[3] if len(data) >= 4 and data[0] == 0x03 else 0


def _check_ns_cert_type(cert: x509.Certificate, wanted: str) -> None:
    # Stock (OpenSSL builds): X509_check_purpose(SSL_SERVER/SSL_CLIENT), falling back to the
    # Netscape bit. OpenSSL's purpose: an EKU, when present, must allow the purpose; a
    # Netscape type, when present, must have the bit; keyUsage, when present, must allow it.
    eku_oid = ExtendedKeyUsageOID.SERVER_AUTH if wanted == "server" else \
        ExtendedKeyUsageOID.CLIENT_AUTH
    ns_bit = _NS_SSL_SERVER if wanted == "server" else _NS_SSL_CLIENT
    ekus, ns_bits = _ekus(cert), _ns_type_bits(cert)
    purpose = (ekus is None or eku_oid in ekus) and (ns_bits is None or bool(ns_bits & ns_bit))
    ku = _key_usage_value(cert)
    if purpose and ku is not None:
        needed = 0xA0 if wanted == "server" else 0x88  # sig|keyEnc, sig|keyAgreement
        purpose = bool(ku & needed)
    if not purpose and ns_bits is not None and ns_bits & ns_bit:
        purpose = True
    if not purpose:
        raise HandshakeError(
            f"VERIFY ERROR: peer certificate is not a {wanted} certificate (ns-cert-type {wanted})"
        )


def verify_peer_extras(
    cert: x509.Certificate, *, ns_cert_type: str | None, remote_cert_ku: Sequence[int],
    remote_cert_eku: str | None,
) -> None:
    """ns-cert-type, remote-cert-ku, remote-cert-eku on the peer's leaf; HandshakeError."""
    if ns_cert_type is not None:
        _check_ns_cert_type(cert, ns_cert_type)
    if remote_cert_ku:
        ku = _key_usage_value(cert)
        if ku is None:
            raise HandshakeError("VERIFY ERROR: peer certificate has no keyUsage extension "
                                 "(remote-cert-ku)")
        wanted = [value for value in remote_cert_ku if value]
        if wanted and not any(ku & value == value for value in wanted):
            expected = ", ".join(f"{value:04x}" for value in wanted)
            raise HandshakeError(f"VERIFY ERROR: peer certificate has key usage {ku:04x}, "
                                 f"expected one of: {expected}")
    if remote_cert_eku is not None:
        ekus = _ekus(cert) or []
        wanted_oid = _EKU_NAMES.get(remote_cert_eku)
        matched = any(
            oid == wanted_oid or oid.dotted_string == remote_cert_eku
            or getattr(oid, "_name", None) == remote_cert_eku
            for oid in ekus
        )
        if not matched:
            raise HandshakeError(f"VERIFY ERROR: peer certificate lacks extended key usage "
                                 f"{remote_cert_eku!r} (remote-cert-eku)")
