"""`crl-verify`: the peer check that refuses revoked certificates, with stock 2.6's meaning.

* `crl-verify FILE` (or an inline block): PEM CRL(s). The file is read again whenever its
  modification time or size changes (stock's `tls_ctx_reload_crl()` on every new TLS
  session), so revoking a client needs no restart. The file is read at start (the parser
  refuses a missing one, as stock exits with "Failed to stat CRL file during
  initialization"); when it disappears later, the CRL last read stays in force with stock's
  "WARNING: Failed to stat CRL file, not reloading CRL." (so a revoked client stays refused),
  and it is read again once it is back. Like OpenSSL's CRL check that stock turns on, a CRL
  that is not signed by one of our CAs, is not yet valid or has expired refuses the peer;
  stricter than stock, so does a CRL file that exists but cannot be read or parsed (stock
  then clears its CRLs and lets every client in: a security check we cannot apply is an
  error here). No CRL from the certificate's issuer is accepted, as stock's verify callback
  does.
* `crl-verify DIR dir`: a certificate is revoked when DIR holds a file named after its serial
  number in decimal (stock's `verify_check_crl_dir()`); nothing else is checked.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tunnel.protocol.errors import HandshakeError

__all__ = ["CrlCheck"]

_log = logging.getLogger("tunnel")  # logsetup.LOGGER_NAME

_MAX_CRL_BYTES = 16 << 20
_PEM_END = "-----END X509 CRL-----"


def _split_crls(text: str) -> list[x509.CertificateRevocationList]:
    crls = []
    for chunk in text.split(_PEM_END)[:-1]:
        crls.append(x509.load_pem_x509_crl((chunk + _PEM_END).strip().encode()))
    return crls


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return False
    try:
        return crl.is_signature_valid(key)
    except Exception:  # an unsupported signature algorithm is no valid signature
        return False


@dataclass
class CrlCheck:
    """Callable peer check for TlsSettings.peer_checks; raises HandshakeError."""

    ca_pem: str
    path: Path | None = None
    is_dir: bool = False
    inline: str | None = None
    _stamp: tuple[int, int] | None = field(default=None, repr=False)
    _crls: list[x509.CertificateRevocationList] = field(default_factory=list, repr=False)
    _error: str | None = field(default=None, repr=False)
    _cas: list[x509.Certificate] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._cas = x509.load_pem_x509_certificates(self.ca_pem.encode()) if self.ca_pem else []
        if self.inline is not None:
            self._load_text(self.inline)
        elif self.path is not None and not self.is_dir:
            self._reload_if_changed(self.path)  # at start, as stock's init_ssl()

    def __call__(self, cert: x509.Certificate, address: tuple[str, int] | None = None) -> None:
        if self.is_dir:
            assert self.path is not None
            if (self.path / str(cert.serial_number)).exists():
                raise HandshakeError(
                    f"VERIFY CRL: certificate serial number {cert.serial_number} is revoked")
            return
        if self.path is not None:
            self._reload_if_changed(self.path)
        if self._error is not None:
            raise HandshakeError(f"VERIFY ERROR: CRL check failed: {self._error}")
        now = datetime.datetime.now(datetime.UTC)
        for crl in self._crls:
            if crl.issuer != cert.issuer:
                continue
            if crl.last_update_utc > now:
                raise HandshakeError("VERIFY ERROR: CRL is not yet valid")
            if crl.next_update_utc is not None and crl.next_update_utc < now:
                raise HandshakeError("VERIFY ERROR: CRL has expired")
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise HandshakeError(
                    f"VERIFY ERROR: certificate revoked (serial {cert.serial_number})")
            return
        # No CRL from this certificate's issuer: stock's verify callback logs and ignores
        # "unable to get certificate CRL", so we accept too.

    def _reload_if_changed(self, path: Path) -> None:
        try:
            info = os.stat(path)
        except OSError as exc:
            if self._stamp is None:  # never read: nothing to keep in force
                self._crls, self._error = [], f"cannot read {path}: {exc.strerror or exc}"
            else:
                _log.warning("WARNING: Failed to stat CRL file, not reloading CRL.")
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            with path.open("rb") as stream:
                data = stream.read(_MAX_CRL_BYTES + 1)
            if len(data) > _MAX_CRL_BYTES:
                raise ValueError(f"larger than {_MAX_CRL_BYTES} bytes")
            self._load_text(data.decode("ascii", errors="replace"))
        except (OSError, ValueError) as exc:
            self._crls, self._error = [], f"cannot use {path}: {exc}"

    def _load_text(self, text: str) -> None:
        try:
            crls = _split_crls(text)
        except ValueError as exc:
            self._crls, self._error = [], f"not a PEM CRL: {exc}"
            return
        if not crls:
            self._crls, self._error = [], "no CRL in the file"
            return
        good = [crl for crl in crls
                if any(ca.subject == crl.issuer and _signed_by(crl, ca) for ca in self._cas)]
        if len(good) != len(crls):
            self._crls, self._error = [], "a CRL is not signed by any of the configured CAs"
            return
        self._crls, self._error = good, None
