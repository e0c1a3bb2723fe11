"""A small certificate authority for users without easy-rsa (`tunnel pki DIR`).

It issues exactly the PKI that was verified against a stock OpenVPN 2.6 peer
(OPENVPN-WIRE.md section 5): EC P-256 keys, SHA-256 signatures, and

* CA: basicConstraints CA:TRUE (critical), keyUsage keyCertSign + cRLSign;
* server: keyUsage digitalSignature + keyEncipherment, EKU serverAuth, CN;
* client: keyUsage digitalSignature, EKU clientAuth, CN.

A stock client with `remote-cert-tls server` needs the server's keyUsage extension and EKU
serverAuth; a stock server insists on a CN (its default `x509-username-field`). P-256 keeps the
certificates above OpenSSL security level 2, which Debian's Python uses by default.

Beyond the recipe each certificate also gets subjectKeyIdentifier (and the leaves
authorityKeyIdentifier) so OpenSSL can build chains when a CA is ever re-issued, and leaves say
CA:FALSE so a leaf key can never sign other certificates. Neither affects OpenVPN's checks.

The CA key is returned by `generate_pki_in_memory` but `generate_pki` does not write it: a
throwaway CA should not leave a signing key next to the configs. Issuing more clients later
means generating a new PKI.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PkiPaths", "generate_pki", "generate_pki_in_memory"]

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
TLS_CRYPT_KEY = "tc.key"

# Start validity an hour in the past: a peer whose clock runs a little behind would otherwise
# reject a freshly generated certificate as "not yet valid".
_CLOCK_SKEW = datetime.timedelta(hours=1)

# Client files are named after the CN; these would collide with the CA and server files.
_RESERVED_NAMES = frozenset({"ca", "server"})

_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DIR_MODE = 0o700


@dataclass(frozen=True)
class PkiPaths:
    """Where `generate_pki` wrote each file; `clients` maps a client name to (cert, key)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]
    tls_crypt_key: Path | None = None  # tc.key, with `tunnel pki --tls-crypt`


def generate_pki_in_memory(
    *,
    server_cn: str = "server",
    client_cns: Sequence[str] = ("client",),
    days: int = 3650,
    ca_cn: str = "pyovpn CA",
) -> dict[str, bytes]:
    """Issue a CA, one server and the given clients; return PEM bytes by file name.

    Keys: "ca.crt", "ca.key", "server.crt", "server.key", "<cn>.crt" and "<cn>.key" per client.
    Private keys are unencrypted PKCS#8 PEM; certificates are PEM.
    """
    _check_names(client_cns)
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - _CLOCK_SKEW
    not_after = now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _cn_name(ca_cn)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files: dict[str, bytes] = {
        CA_CERT: ca_cert.public_bytes(serialization.Encoding.PEM),
        CA_KEY: _key_pem(ca_key),
    }
    server = _issue_leaf(
        ca_cert,
        ca_key,
        server_cn,
        _key_usage(digital_signature=True, key_encipherment=True),
        ExtendedKeyUsageOID.SERVER_AUTH,
        not_before,
        not_after,
    )
    files[SERVER_CERT], files[SERVER_KEY] = server
    for cn in client_cns:
        client = _issue_leaf(
            ca_cert,
            ca_key,
            cn,
            _key_usage(digital_signature=True),
            ExtendedKeyUsageOID.CLIENT_AUTH,
            not_before,
            not_after,
        )
        files[f"{cn}.crt"], files[f"{cn}.key"] = client
    return files


def generate_pki(
    out_dir: Path,
    *,
    server_cn: str = "server",
    client_cns: Sequence[str] = ("client",),
    days: int = 3650,
    ca_cn: str = "pyovpn CA",
    overwrite: bool = False,
    tls_crypt: bool = False,
) -> PkiPaths:
    """Issue a PKI (see `generate_pki_in_memory`) and write it to `out_dir`.

    Keys are written mode 0600, certificates 0644; a missing `out_dir` is created 0700.
    Without `overwrite`, an existing target file raises FileExistsError naming it, and that
    check covers every file before anything is written, so a refusal leaves `out_dir` as it was.
    """
    out_dir = Path(out_dir)
    pems = generate_pki_in_memory(
        server_cn=server_cn, client_cns=client_cns, days=days, ca_cn=ca_cn
    )
    del pems[CA_KEY]  # deliberately not persisted; see the module docstring
    if tls_crypt:
        # A static key for `tls-crypt tc.key` on both sides, as `openvpn --genkey secret` writes.
        from tunnel.protocol.wrap.keyfile import format_static_key, generate_static_key

        pems[TLS_CRYPT_KEY] = format_static_key(generate_static_key()).encode()

    targets = {name: out_dir / name for name in pems}
    if not overwrite:
        for path in targets.values():
            if path.exists() or path.is_symlink():
                raise FileExistsError(f"refusing to overwrite existing file {path}")

    out_dir.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    for name, pem in pems.items():
        mode = _KEY_MODE if name.endswith(".key") else _CERT_MODE
        _write_file(targets[name], pem, mode, overwrite=overwrite)

    return PkiPaths(
        ca_cert=targets[CA_CERT],
        server_cert=targets[SERVER_CERT],
        server_key=targets[SERVER_KEY],
        clients={cn: (targets[f"{cn}.crt"], targets[f"{cn}.key"]) for cn in client_cns},
        tls_crypt_key=targets.get(TLS_CRYPT_KEY),
    )


def _check_names(client_cns: Sequence[str]) -> None:
    """Client CNs become file names, so they must be plain, unique and not clash with ours."""
    if isinstance(client_cns, str):
        # A bare string is a Sequence[str] too and would issue one client per character.
        raise TypeError("client_cns must be a sequence of names, not a single string")
    seen: set[str] = set()
    for cn in client_cns:
        if not cn or cn.startswith(".") or any(c in cn for c in "/\\\0"):
            raise ValueError(f"client name {cn!r} cannot be used as a file name")
        if cn in _RESERVED_NAMES:
            raise ValueError(f"client name {cn!r} would collide with the {cn}.crt/.key files")
        if cn in seen:
            raise ValueError(f"client name {cn!r} given twice")
        seen.add(cn)


def _cn_name(cn: str) -> x509.Name:
    # cryptography enforces the X.520 CN length (1..64), which is also OpenVPN's CN limit.
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cn: str,
    key_usage: x509.KeyUsage,
    eku: x509.ObjectIdentifier,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> tuple[bytes, bytes]:
    """One end-entity certificate and its key, as (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_cn_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_file(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    """Write `data` so the file never exists with looser permissions than `mode`.

    Without overwrite, O_EXCL makes the existence check and the creation one step (a file that
    appeared since the pre-check is still not clobbered). With overwrite, a temporary file in
    the same directory is created with `mode` and renamed over the target, so an existing
    world-readable file is replaced rather than rewritten in place with its old mode.
    """
    if not overwrite:
        _write_new(path, data, mode)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_new(tmp, data, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        # The umask can only remove bits from `mode`; fchmod makes the result exact.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1  # now owned by the file object
            f.write(data)
    finally:
        if fd != -1:
            os.close(fd)
