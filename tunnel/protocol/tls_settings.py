"""The TLS part of a tunnel's configuration (`TlsSettings`), checked when it is made.

`tls_context.make_context` builds an `ssl.SSLContext` from it, `x509_checks` runs OpenVPN's
checks on the peer certificate with it, and `tls.TlsSession` carries both through a handshake.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509

from tunnel.protocol.errors import ConfigError

__all__ = ["REMOTE_CERT_TLS_ROLES", "PeerCheck", "TlsSettings", "tls_version"]

_TLS_VERSIONS: Final = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
REMOTE_CERT_TLS_ROLES: Final = ("server", "client")
"""The values of `remote-cert-tls` (x509_checks maps each to the EKU it requires)."""
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
        if self.remote_cert_tls is not None and self.remote_cert_tls not in REMOTE_CERT_TLS_ROLES:
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
        low = tls_version("tls-version-min", self.tls_version_min)
        if self.tls_version_max is not None:
            high = tls_version("tls-version-max", self.tls_version_max)
            if high < low:
                raise ConfigError(
                    f"tls-version-max {self.tls_version_max} is below "
                    f"tls-version-min {self.tls_version_min}"
                )



def tls_version(option: str, value: str) -> ssl.TLSVersion:
    try:
        return _TLS_VERSIONS[value]
    except KeyError:
        raise ConfigError(
            f"{option} must be one of {', '.join(_TLS_VERSIONS)}, not {value!r}"
        ) from None


