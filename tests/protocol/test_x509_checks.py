"""OpenVPN's peer-certificate checks (x509_checks.py): remote-cert-tls, the CN, verify-x509-name
and stock's subject string, through real handshakes and on certificates alone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.protocol.tls_helpers import (
    Pems,
    cn_name,
    custom_tls,
    handshake,
    issue_leaf,
    session_pair,
    tls_for,
)
from tunnel.protocol.errors import HandshakeError
from tunnel.protocol.tls_settings import TlsSettings
from tunnel.protocol.x509_checks import openvpn_subject, verify_peer_certificate


def test_client_eku_cert_presented_as_server_is_refused(pki: Pems) -> None:
    """OpenSSL's own purpose check already refuses it (as in a stock peer)."""
    client, server = session_pair(
        tls_for(pki, "client", remote_cert_tls="server"),
        tls_for(pki, "client"),  # the server presents the client certificate
    )
    with pytest.raises(HandshakeError, match="unsuitable certificate purpose"):
        handshake(client, server)


def test_remote_cert_tls_server_needs_eku(pki: Pems) -> None:
    # No EKU at all passes OpenSSL's purpose check; remote-cert-tls must catch it.
    server = custom_tls(pki, cn_name("server"), eku=None)
    client, srv = session_pair(tls_for(pki, "client", remote_cert_tls="server"), server)
    with pytest.raises(HandshakeError) as info:
        handshake(client, srv)
    assert str(info.value) == (
        "peer certificate lacks EKU serverAuth required by remote-cert-tls server"
    )
    # Without remote-cert-tls the same certificate is fine.
    client, srv = session_pair(tls_for(pki, "client"), server)
    handshake(client, srv)


def test_remote_cert_tls_server_needs_key_usage(pki: Pems) -> None:
    server = custom_tls(pki, cn_name("server"), key_usage=False,
                        eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    client, srv = session_pair(tls_for(pki, "client", remote_cert_tls="server"), server)
    with pytest.raises(
        HandshakeError, match="lacks the keyUsage extension required by remote-cert-tls server"
    ):
        handshake(client, srv)


def test_remote_cert_tls_client_needs_eku(pki: Pems) -> None:
    client_settings = custom_tls(pki, cn_name("client"), eku=None)
    client, server = session_pair(client_settings, tls_for(pki, "server", remote_cert_tls="client"))
    with pytest.raises(
        HandshakeError, match="lacks EKU clientAuth required by remote-cert-tls client"
    ):
        handshake(client, server)
    assert server.peer_common_name is None


def test_cn_is_required(pki: Pems) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "NoName Inc")])
    client, server = session_pair(custom_tls(pki, subject), tls_for(pki, "server"))
    with pytest.raises(HandshakeError, match=r"^VERIFY ERROR: could not extract CN") as info:
        handshake(client, server)
    assert "O=NoName Inc" in str(info.value)


# -- verify-x509-name -----------------------------------------------------------------------

FULL_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
        x509.NameAttribute(NameOID.COMMON_NAME, "vpn-server-01"),
    ]
)


@pytest.mark.parametrize(
    ("expected", "accepted"),
    [
        (("C=US, O=Example, CN=vpn-server-01", "subject"), True),
        (("CN=vpn-server-01, O=Example, C=US", "subject"), False),  # RFC 4514 order: not ours
        (("C=US,O=Example,CN=vpn-server-01", "subject"), False),
        (("vpn-server-01", "name"), True),
        (("vpn-server", "name"), False),
        (("vpn-server", "name-prefix"), True),
        (("vpn-server-01", "name-prefix"), True),
        (("vpn-client", "name-prefix"), False),
    ],
)
def test_verify_x509_name(pki: Pems, expected: tuple[str, str], accepted: bool) -> None:
    server = custom_tls(pki, FULL_SUBJECT, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    client_settings = tls_for(pki, "client", remote_cert_tls="server", verify_x509_name=expected)
    client, srv = session_pair(client_settings, server)
    if accepted:
        handshake(client, srv)
        assert client.peer_common_name == "vpn-server-01"
        assert client.peer_subject == "C=US, O=Example, CN=vpn-server-01"
    else:
        with pytest.raises(HandshakeError, match="verify-x509-name"):
            handshake(client, srv)


def test_verify_x509_name_mismatch_message(pki: Pems) -> None:
    client, server = session_pair(
        tls_for(pki, "client", verify_x509_name=("other", "name")), tls_for(pki, "server")
    )
    with pytest.raises(HandshakeError) as info:
        handshake(client, server)
    assert str(info.value) == (
        "peer certificate CN 'server' does not match verify-x509-name 'other' name"
    )


# -- OpenVPN's subject string ----------------------------------------------------------------

ODD_SUBJECT = x509.Name(
    [
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]),
        x509.RelativeDistinguishedName(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x,y"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "u"),
            ]
        ),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.c")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "dc")]),
        x509.RelativeDistinguishedName(
            [x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4.5"), "unknown")]
        ),
        x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.COMMON_NAME, 'a\x7fb\x01c\\d\u00e9\u65e5 "<>;=#')]
        ),
    ]
)


def _roundtrip(name: x509.Name, pki: Pems) -> x509.Certificate:
    cert, _ = issue_leaf(pki, name)
    return x509.load_pem_x509_certificate(cert.encode())


def test_openvpn_subject_format(pki: Pems) -> None:
    cert = _roundtrip(ODD_SUBJECT, pki)
    assert openvpn_subject(cert.subject) == (
        "C=DE, OU=u + O=x,y, emailAddress=a@b.c, DC=dc, 1.2.3.4.5=unknown, "
        'CN=a\\7Fb\\01c\\\\d\u00e9\u65e5 "<>;=#'
    )


def test_openvpn_subject_simple_and_empty() -> None:
    assert openvpn_subject(cn_name("server")) == "CN=server"
    assert openvpn_subject(x509.Name([])) == ""


@pytest.mark.openssl
def test_openvpn_subject_matches_openssl_cli(pki: Pems, tmp_path: Path) -> None:
    """Same flags as ssl_verify_openssl.c: x509_get_subject(), through the openssl CLI."""
    cert, _ = issue_leaf(pki, ODD_SUBJECT)
    path = tmp_path / "odd.crt"
    path.write_text(cert)
    out = subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-subject",
         "-nameopt", "sep_comma_plus_space,sname,utf8,esc_ctrl"],
        capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    expected = out.decode("utf-8").removeprefix("subject=").rstrip("\n")
    parsed = x509.load_pem_x509_certificate(cert.encode())
    assert openvpn_subject(parsed.subject) == expected


def test_cn_rules(pki: Pems) -> None:
    s = TlsSettings(ca=pki["ca.crt"].decode(), cert=pki["client.crt"].decode(),
                    key=pki["client.key"].decode())  # fmt: skip

    def der(name: x509.Name) -> bytes:
        return _roundtrip(name, pki).public_bytes(serialization.Encoding.DER)

    two_cns = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "first"),
            x509.NameAttribute(NameOID.COMMON_NAME, "last"),
        ]
    )
    assert verify_peer_certificate(der(two_cns), s).common_name == "last"  # stock takes the last
    tab = verify_peer_certificate(der(cn_name("a\tb")), s)
    assert tab.common_name == "a_b"  # string_mod_remap_name
    with pytest.raises(HandshakeError, match="could not extract CN"):
        verify_peer_certificate(der(cn_name("evil\0suffix")), s)
    with pytest.raises(HandshakeError, match="could not parse"):
        verify_peer_certificate(b"\x30\x03junk", s)
