"""TLS knobs (tls_ops.py) and crl-verify (app/crl.py) with real OpenSSL and real certificates."""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.corpus.materials import _crl
from tunnel.app.crl import CrlCheck
from tunnel.pki import generate_pki_in_memory
from tunnel.protocol.errors import ConfigError, HandshakeError
from tunnel.protocol.tls_context import make_context
from tunnel.protocol.tls_ops import openssl_cipher_list, verify_peer_extras
from tunnel.protocol.tls_settings import TlsSettings


@pytest.fixture(scope="module")
def pem() -> dict[str, bytes]:
    return generate_pki_in_memory(client_cns=["client", "revoked"], days=2)


def _cert(pem: dict[str, bytes], name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem[f"{name}.crt"])


def _settings(pem: dict[str, bytes], **knobs: object) -> TlsSettings:
    return TlsSettings(ca=pem["ca.crt"].decode(), cert=pem["server.crt"].decode(),
                       key=pem["server.key"].decode(), **knobs)  # type: ignore[arg-type]


def test_openvpn_cipher_names_become_openssl_names() -> None:
    assert openssl_cipher_list("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256") == \
        "ECDHE-ECDSA-AES128-GCM-SHA256"
    mixed = "ECDHE-RSA-AES256-GCM-SHA384:TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256"
    assert openssl_cipher_list(mixed) == "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"


def test_knobs_reach_openssl(pem: dict[str, bytes]) -> None:
    ctx = make_context(_settings(
        pem, tls_cipher="TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
        tls_ciphersuites="TLS-AES-256-GCM-SHA384", tls_groups="X25519:secp256r1"),
        server_side=True)
    names = [c["name"] for c in ctx.get_ciphers()]
    assert names == ["TLS_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256"]


@pytest.mark.parametrize(("knob", "value"), [
    ("tls_cipher", "NO-SUCH-CIPHER"), ("tls_ciphersuites", "TLS_NOPE"),
    ("tls_groups", "nosuchcurve"), ("ecdh_curve", "nosuchcurve"),
])
def test_a_restriction_openssl_refuses_is_an_error(pem: dict[str, bytes], knob: str,
                                                   value: str) -> None:
    with pytest.raises(ConfigError):
        make_context(_settings(pem, **{knob: value}), server_side=True)


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_side=False)
    for _ in range(10):
        for obj in (cli, srv):
            with contextlib.suppress(ssl.SSLWantReadError):
                obj.do_handshake()
        c_in.write(s_out.read())
        s_in.write(c_out.read())
    cli.do_handshake()


def test_disjoint_groups_fail_the_handshake(pem: dict[str, bytes]) -> None:
    client_settings = TlsSettings(ca=pem["ca.crt"].decode(), cert=pem["client.crt"].decode(),
                                  key=pem["client.key"].decode(), tls_groups="secp384r1")
    server = make_context(_settings(pem, tls_groups="X25519"), server_side=True)
    with pytest.raises(ssl.SSLError):
        _handshake(server, make_context(client_settings, server_side=False))
    ok = make_context(_settings(pem, tls_groups="X25519:secp384r1"), server_side=True)
    _handshake(ok, make_context(client_settings, server_side=False))


def test_ns_cert_type_and_key_usage(pem: dict[str, bytes]) -> None:
    server, client = _cert(pem, "server"), _cert(pem, "client")
    verify_peer_extras(server, ns_cert_type="server", remote_cert_ku=(0xA0,), remote_cert_eku=
                       "TLS Web Server Authentication")
    verify_peer_extras(client, ns_cert_type="client", remote_cert_ku=(0x80,),
                       remote_cert_eku="1.3.6.1.5.5.7.3.2")
    with pytest.raises(HandshakeError, match="not a server certificate"):
        verify_peer_extras(client, ns_cert_type="server", remote_cert_ku=(), remote_cert_eku=None)
    with pytest.raises(HandshakeError, match="key usage 0080"):
        verify_peer_extras(client, ns_cert_type=None, remote_cert_ku=(0xA0,),
                           remote_cert_eku=None)
    with pytest.raises(HandshakeError, match="extended key usage"):
        verify_peer_extras(client, ns_cert_type=None, remote_cert_ku=(),
                           remote_cert_eku="serverAuth")


def test_crl_file_refuses_revoked_and_is_reread(tmp_path: Path, pem: dict[str, bytes]) -> None:
    crl_path = tmp_path / "crl.pem"
    other = generate_pki_in_memory(client_cns=["x"], days=2)
    crl_path.write_bytes(_crl(pem["ca.crt"], pem["ca.key"], pem["client.crt"]))
    check = CrlCheck(pem["ca.crt"].decode(), crl_path)
    check(_cert(pem, "revoked"))  # not in this CRL
    with pytest.raises(HandshakeError, match="revoked"):
        check(_cert(pem, "client"))
    # Replaced while running (a new revocation): the next check sees it.
    crl_path.write_bytes(_crl(pem["ca.crt"], pem["ca.key"], pem["revoked.crt"]))
    os.utime(crl_path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    check(_cert(pem, "client"))
    with pytest.raises(HandshakeError, match="revoked"):
        check(_cert(pem, "revoked"))
    # Fails closed: a CRL from another CA, or no readable file at all.
    crl_path.write_bytes(_crl(other["ca.crt"], other["ca.key"], other["x.crt"]))
    os.utime(crl_path, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    with pytest.raises(HandshakeError, match="not signed"):
        check(_cert(pem, "client"))
    # Gone: the CRL last read stays in force (stock: "not reloading CRL"), here the bad one.
    crl_path.unlink()
    with pytest.raises(HandshakeError, match="not signed"):
        check(_cert(pem, "client"))


def test_crl_file_gone_keeps_the_last_crl(tmp_path: Path, pem: dict[str, bytes],
                                          caplog: pytest.LogCaptureFixture) -> None:
    crl_path = tmp_path / "crl.pem"
    crl_path.write_bytes(_crl(pem["ca.crt"], pem["ca.key"], pem["revoked.crt"]))
    check = CrlCheck(pem["ca.crt"].decode(), crl_path)  # read now, as stock at start
    crl_path.unlink()
    caplog.set_level(logging.WARNING, logger="tunnel")
    logging.getLogger("tunnel").propagate = True
    try:
        check(_cert(pem, "client"))
        with pytest.raises(HandshakeError, match="revoked"):
            check(_cert(pem, "revoked"))
    finally:
        logging.getLogger("tunnel").propagate = False
    assert "WARNING: Failed to stat CRL file, not reloading CRL." in caplog.text
    # Back with a new revocation: read again.
    crl_path.write_bytes(_crl(pem["ca.crt"], pem["ca.key"], pem["client.crt"]))
    check(_cert(pem, "revoked"))
    with pytest.raises(HandshakeError, match="revoked"):
        check(_cert(pem, "client"))
    # Never read (gone before the first check): nothing to keep, every peer refused.
    missing = CrlCheck(pem["ca.crt"].decode(), tmp_path / "nothing.pem")
    with pytest.raises(HandshakeError, match="cannot read"):
        missing(_cert(pem, "client"))


def test_crl_dir_and_inline(tmp_path: Path, pem: dict[str, bytes]) -> None:
    revoked = _cert(pem, "revoked")
    (tmp_path / str(revoked.serial_number)).write_text("")
    check = CrlCheck(pem["ca.crt"].decode(), tmp_path, is_dir=True)
    check(_cert(pem, "client"))
    with pytest.raises(HandshakeError, match="is revoked"):
        check(revoked)
    inline = CrlCheck(pem["ca.crt"].decode(), inline=_crl(pem["ca.crt"], pem["ca.key"],
                                                           pem["revoked.crt"]).decode())
    inline(_cert(pem, "client"))
    with pytest.raises(HandshakeError):
        inline(revoked)


def test_peer_fingerprint_without_ca(pem: dict[str, bytes]) -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    from tunnel.protocol.x509_checks import verify_peer_certificate

    client_der = _cert(pem, "client").public_bytes(serialization.Encoding.DER)
    server_der = _cert(pem, "server").public_bytes(serialization.Encoding.DER)
    server_settings = TlsSettings(ca="", cert=pem["server.crt"].decode(),
                                  key=pem["server.key"].decode(),
                                  peer_fingerprints=(hashlib.sha256(client_der).digest(),))
    client_settings = TlsSettings(ca="", cert=pem["client.crt"].decode(),
                                  key=pem["client.key"].decode(),
                                  peer_fingerprints=(hashlib.sha256(server_der).digest(),))
    # Without a CA the chain check is the fingerprint's: the TLS handshake itself completes.
    _handshake(make_context(server_settings, server_side=True),
               make_context(client_settings, server_side=False))
    assert verify_peer_certificate(client_der, server_settings).common_name == "client"
    revoked_der = _cert(pem, "revoked").public_bytes(serialization.Encoding.DER)
    with pytest.raises(HandshakeError, match="fingerprint"):
        verify_peer_certificate(revoked_der, server_settings)
    # Without a fingerprint and without a CA nothing is accepted.
    bare = TlsSettings(ca="", cert=pem["server.crt"].decode(), key=pem["server.key"].decode())
    with pytest.raises(ConfigError):
        make_context(bare, server_side=True)
