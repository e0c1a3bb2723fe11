"""Shared by the TLS tests (test_tls, test_tls_context, test_tls_settings, test_x509_checks):
a PKI, leaf certificates with chosen extensions, and two TlsSessions driven in memory.

Their fixtures (pki, other_pki, client_settings, server_settings, pair) are in conftest.py.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tunnel.protocol.tls import TlsSession
from tunnel.protocol.tls_context import make_context
from tunnel.protocol.tls_settings import TlsSettings

# Sizes observed from stock 2.6.14 (OPENVPN-WIRE.md section 6).
CLIENT_KM2 = b"\x00\x00\x00\x00\x02" + bytes(range(256)) + b"c" * 117  # 378 bytes
SERVER_KM2 = b"\x00\x00\x00\x00\x02" + b"s" * 173  # 178 bytes
TLS_APPLICATION_DATA = 23

Pems = dict[str, bytes]


# -- PKI fixtures ---------------------------------------------------------------------------


def tls_for(pems: Pems, name: str, ca: Pems | None = None, **extra: object) -> TlsSettings:
    return TlsSettings(
        ca=(ca or pems)["ca.crt"].decode(),
        cert=pems[f"{name}.crt"].decode(),
        key=pems[f"{name}.key"].decode(),
        **extra,  # type: ignore[arg-type]
    )


def issue_leaf(
    pems: Pems,
    subject: x509.Name,
    *,
    key_usage: bool = True,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> tuple[str, str]:
    """A leaf signed by the CA of `pems` with exactly the extensions asked for: (cert, key)."""
    ca_cert = x509.load_pem_x509_certificate(pems["ca.crt"])
    ca_key = serialization.load_pem_private_key(pems["ca.key"], password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def custom_tls(pems: Pems, subject: x509.Name, **kw: object) -> TlsSettings:
    cert, key = issue_leaf(pems, subject, **kw)  # type: ignore[arg-type]
    return TlsSettings(ca=pems["ca.crt"].decode(), cert=cert, key=key)


def cn_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


# -- driving two sessions -------------------------------------------------------------------


def session_pair(client: TlsSettings, server: TlsSettings) -> tuple[TlsSession, TlsSession]:
    return (
        TlsSession(make_context(client, server_side=False), server_side=False, settings=client),
        TlsSession(make_context(server, server_side=True), server_side=True, settings=server),
    )


def handshake(client: TlsSession, server: TlsSession, rounds: int = 10) -> None:
    """Shuttle ciphertext both ways, as the control channel would, until both complete."""
    for _ in range(rounds):
        client.step()
        server.feed(client.take_outgoing())
        server.step()
        client.feed(server.take_outgoing())
        if client.handshake_complete and server.handshake_complete:
            return
    raise AssertionError("handshake did not complete")


def tls_records(wire: bytes) -> Iterator[tuple[int, int]]:
    """(content type, length) of each TLS record in `wire`."""
    pos = 0
    while pos < len(wire):
        assert len(wire) - pos >= 5, "truncated record header"
        length = int.from_bytes(wire[pos + 3 : pos + 5], "big")
        yield wire[pos], length
        pos += 5 + length
    assert pos == len(wire)


