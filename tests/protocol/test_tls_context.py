"""make_context (tls_context.py): a stock-like SSLContext, PEM problems named in our words, the
key checked against its certificate, no temporary file left behind.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.protocol.tls_helpers import (
    Pems,
    tls_for,
)
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.tls import TlsSession
from tunnel.protocol.tls_context import make_context
from tunnel.protocol.tls_settings import TlsSettings

# -- make_context and TlsSettings ------------------------------------------------------------


def test_context_options(client_settings: TlsSettings, server_settings: TlsSettings) -> None:
    server = make_context(server_settings, server_side=True)
    client = make_context(client_settings, server_side=False)
    for ctx in (server, client):
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert not ctx.check_hostname
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        for option in (ssl.OP_NO_TICKET, ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION):
            assert ctx.options & option
    assert server.num_tickets == 0


def test_context_versions(pki: Pems) -> None:
    ctx = make_context(
        tls_for(pki, "client", tls_version_min="1.3", tls_version_max="1.3"), server_side=False
    )
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize(
    ("item", "replace", "message"),
    [
        ("ca", "not a certificate", r"^ca: "),
        ("cert", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", r"^cert: "),
        ("key", "garbage", r"^key: not a usable PEM private key"),
    ],
)
def test_bad_pem_names_the_item(pki: Pems, item: str, replace: str, message: str) -> None:
    fields = {"ca": pki["ca.crt"].decode(), "cert": pki["client.crt"].decode(),
              "key": pki["client.key"].decode()}  # fmt: skip
    fields[item] = replace
    with pytest.raises(ConfigError, match=message):
        make_context(
            TlsSettings(ca=fields["ca"], cert=fields["cert"], key=fields["key"]), server_side=False
        )


def test_key_not_matching_cert(pki: Pems) -> None:
    settings_ = TlsSettings(
        ca=pki["ca.crt"].decode(), cert=pki["client.crt"].decode(), key=pki["server.key"].decode()
    )
    with pytest.raises(ConfigError, match="does not belong") as info:
        make_context(settings_, server_side=False)
    assert "PRIVATE KEY" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_encrypted_key(pki: Pems) -> None:
    key = serialization.load_pem_private_key(pki["client.key"], password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret-pw"),
    ).decode()
    ca, cert = pki["ca.crt"].decode(), pki["client.crt"].decode()
    make_context(TlsSettings(ca, cert, encrypted, key_password="s3cret-pw"), server_side=False)
    with pytest.raises(ConfigError, match="no key password"):
        make_context(TlsSettings(ca, cert, encrypted), server_side=False)
    with pytest.raises(ConfigError, match="password is wrong") as info:
        make_context(TlsSettings(ca, cert, encrypted, key_password="wrong-pw"), server_side=False)
    assert "wrong-pw" not in str(info.value)
    # A password for a clear key is ignored, as stock does.
    clear = pki["client.key"].decode()
    make_context(TlsSettings(ca, cert, clear, key_password="unused"), server_side=False)



def test_no_temporary_files_left(
    pki: Pems, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tempfile

    created: list[str] = []
    real = tempfile.mkdtemp

    def spy(*args: object, **kwargs: object) -> str:
        path: str = real(*args, **kwargs)  # type: ignore[call-overload]
        created.append(path)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    make_context(tls_for(pki, "client"), server_side=False)
    with pytest.raises(ConfigError):
        make_context(TlsSettings(ca=pki["ca.crt"].decode(), cert=pki["client.crt"].decode(),
                                 key=pki["server.key"].decode()), server_side=False)  # fmt: skip
    assert created
    for path in created:
        assert not Path(path).exists()


def test_our_chain_is_our_certificate_and_its_ca(pki: Pems) -> None:
    """The chain we send: our certificate, then its CA from `ca` (what OpenSSL's automatic
    chain sends, and stock; make_context builds it once per context instead of per
    handshake), the same in every handshake of the context. TLS 1.2 sends the Certificate
    message in the clear, so it is read off the server's first flight."""
    server_settings = tls_for(pki, "server", tls_version_max="1.2")
    client_settings = tls_for(pki, "client")
    server_ctx = make_context(server_settings, server_side=True)
    client_ctx = make_context(client_settings, server_side=False)
    leaf, ca = (
        x509.load_pem_x509_certificate(pki[name]).public_bytes(serialization.Encoding.DER)
        for name in ("server.crt", "ca.crt")
    )
    for _ in range(3):
        client = TlsSession(client_ctx, server_side=False, settings=client_settings)
        server = TlsSession(server_ctx, server_side=True, settings=server_settings)
        client.step()
        server.feed(client.take_outgoing())
        server.step()
        flight = server.take_outgoing()
        assert leaf in flight and ca in flight
        assert flight.index(leaf) < flight.index(ca)
