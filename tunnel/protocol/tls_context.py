"""Building the control channel's `ssl.SSLContext` from `TlsSettings`, as a stock 2.6 peer's.

PEM text is parsed with `cryptography` first, so a bad item is named in our words ("ca", "cert",
"key") as a `ConfigError`, never an `ssl.SSLError`; the key is checked against the certificate;
`ssl` loads a certificate chain only from files, so it goes through private temporary files on
tmpfs (`_load_cert_chain`). The TLS knobs (tls-cipher, groups, capath) are `tls_ops.py`'s.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import tempfile

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from tunnel.protocol.errors import ConfigError
from tunnel.protocol.tls_ops import (
    accept_any_chain,
    apply_tls_knobs,
    prebuild_cert_chain,
    session_cache_off,
)
from tunnel.protocol.tls_settings import TlsSettings, tls_version

__all__ = ["make_context", "ssl_reason"]


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
    ctx.minimum_version = tls_version("tls-version-min", settings.tls_version_min)
    ctx.maximum_version = (
        tls_version("tls-version-max", settings.tls_version_max)
        if settings.tls_version_max is not None
        else ssl.TLSVersion.MAXIMUM_SUPPORTED
    )
    # Stock options (ssl_openssl.c: tls_ctx_set_options()): no tickets, no compression, no
    # TLS-level renegotiation; OpenVPN renegotiates with a new TLS session on a new key_id.
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if server_side:
        # TLS 1.3 sends NewSessionTicket messages unless told not to; nobody would use them.
        ctx.num_tickets = 0
    # And no session cache (stock: SSL_SESS_CACHE_OFF). TLS 1.3 resumes only from tickets,
    # our client never offers a session, a stock client has its cache off, and TlsSession
    # refuses a resumed session anyway: every key gets a full handshake.
    session_cache_off(ctx)

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
        raise ConfigError(f"ca: rejected by OpenSSL: {ssl_reason(exc)}") from None
    if pki_less:
        accept_any_chain(ctx)
    apply_tls_knobs(ctx, tls_cipher=settings.tls_cipher, tls_ciphersuites=settings.tls_ciphersuites,
                    tls_groups=settings.tls_groups, ecdh_curve=settings.ecdh_curve,
                    capath=settings.capath)
    if with_cert:
        _load_cert_chain(ctx, "".join(_pem(c) for c in chain), settings.key,
                         settings.key_password)
        if len(chain) == 1 and ca_certs and not settings.capath:
            # Our certificate alone: the chain OpenSSL would build per handshake, built once.
            prebuild_cert_chain(ctx)
    return ctx



# -- PEM material ---------------------------------------------------------------------------


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
        raise ConfigError(f"cert/key: rejected by OpenSSL: {ssl_reason(exc)}") from None
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


def ssl_reason(exc: ssl.SSLError) -> str:
    """The human part of an ssl error, on one line, without the library's decorations."""
    raw = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc)
    match = _SSL_MESSAGE.match(raw)
    text = match.group("text") if match else raw
    text = " ".join(text.split())
    return text or type(exc).__name__
