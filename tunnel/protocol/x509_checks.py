"""OpenVPN's checks on the peer's leaf certificate, after OpenSSL verified the chain.

(ssl_verify.c: verify_cert(), verify_peer_cert().) The subject string and a CN are required,
then remote-cert-tls, verify-x509-name, peer-fingerprint, ns-cert-type / remote-cert-ku /
remote-cert-eku (`tls_ops.verify_peer_extras`) and the app's checks (`TlsSettings.peer_checks`:
crl-verify, tls-verify). Names are formatted as stock shows and compares them
(`openvpn_subject`). Everything refused is a `HandshakeError`.
"""

from __future__ import annotations

import functools
import hashlib
import ssl
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tunnel.protocol.errors import HandshakeError
from tunnel.protocol.tls_ops import verify_peer_extras
from tunnel.protocol.tls_settings import REMOTE_CERT_TLS_ROLES, TlsSettings

__all__ = ["PeerIdentity", "openvpn_subject", "verify_peer_certificate"]

# OpenVPN's TLS_USERNAME_LEN (ssl_verify.c): a longer CN fails "could not extract CN".
_CN_MAX_BYTES: Final = 64

_REMOTE_CERT_TLS: Final = {
    "server": (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
    "client": (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth"),
}
assert set(_REMOTE_CERT_TLS) == set(REMOTE_CERT_TLS_ROLES)


@dataclass(frozen=True)
class PeerIdentity:
    """What the peer certificate says about the peer, in OpenVPN's formats."""

    common_name: str
    subject: str


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
        name = cert.subject  # a new Name object per access: taken once
        subject = openvpn_subject(name)
        common_name = _common_name(name)
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


# -- names ----------------------------------------------------------------------------------


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
    return _short_name_of(oid.dotted_string)


@functools.lru_cache(maxsize=256)
def _short_name_of(dotted: str) -> str:
    # Ask the OpenSSL that Python links against, so the names are exactly the ones a stock
    # peer's X509_NAME_print_ex() uses; OpenSSL prints the dotted OID for unknown types.
    # Cached: a subject has a handful of attribute types, the same ones in every certificate
    # (the lookup was ~10 % of the peer checks per handshake).
    try:
        return ssl._ASN1Object(dotted).shortname
    except ValueError:
        return dotted


def _escape_value(value: str | bytes) -> str:
    # Non-string attribute types are printed byte by byte by OpenSSL (one byte per character).
    text = value if isinstance(value, str) else value.decode("latin-1")
    if text.isprintable() and "\\" not in text:
        return text  # the common case: nothing to escape (no control character, no DEL)
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
    if text.isprintable():
        return text  # no control character and no DEL: nothing to remap
    return "".join("_" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)


