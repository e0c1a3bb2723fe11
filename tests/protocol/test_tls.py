"""TlsSession and make_context, all in memory: handshakes between two sessions, the KM2 ordering
of OPENVPN-WIRE.md section 5, OpenVPN's peer checks, record limits and garbage input.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunnel.pki import generate_pki_in_memory
from tunnel.protocol.errors import ConfigError, HandshakeError
from tunnel.protocol.tls import (
    MAX_RECORD_PLAINTEXT,
    TlsSession,
    TlsSettings,
    make_context,
    openvpn_subject,
    verify_peer_certificate,
)

# Sizes observed from stock 2.6.14 (OPENVPN-WIRE.md section 6).
CLIENT_KM2 = b"\x00\x00\x00\x00\x02" + bytes(range(256)) + b"c" * 117  # 378 bytes
SERVER_KM2 = b"\x00\x00\x00\x00\x02" + b"s" * 173  # 178 bytes
TLS_APPLICATION_DATA = 23

Pems = dict[str, bytes]


# -- PKI fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> Pems:
    return generate_pki_in_memory(client_cns=("client",), ca_cn="test CA")


@pytest.fixture(scope="module")
def other_pki() -> Pems:
    """An independent CA with its own client and server: trusted by nobody in these tests."""
    return generate_pki_in_memory(client_cns=("intruder",), ca_cn="other CA")


def _settings(pems: Pems, name: str, ca: Pems | None = None, **extra: object) -> TlsSettings:
    return TlsSettings(
        ca=(ca or pems)["ca.crt"].decode(),
        cert=pems[f"{name}.crt"].decode(),
        key=pems[f"{name}.key"].decode(),
        **extra,  # type: ignore[arg-type]
    )


def _issue(
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


def _custom(pems: Pems, subject: x509.Name, **kw: object) -> TlsSettings:
    cert, key = _issue(pems, subject, **kw)  # type: ignore[arg-type]
    return TlsSettings(ca=pems["ca.crt"].decode(), cert=cert, key=key)


def _cn(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


# -- driving two sessions -------------------------------------------------------------------


def _sessions(client: TlsSettings, server: TlsSettings) -> tuple[TlsSession, TlsSession]:
    return (
        TlsSession(make_context(client, server_side=False), server_side=False, settings=client),
        TlsSession(make_context(server, server_side=True), server_side=True, settings=server),
    )


def _handshake(client: TlsSession, server: TlsSession, rounds: int = 10) -> None:
    """Shuttle ciphertext both ways, as the control channel would, until both complete."""
    for _ in range(rounds):
        client.step()
        server.feed(client.take_outgoing())
        server.step()
        client.feed(server.take_outgoing())
        if client.handshake_complete and server.handshake_complete:
            return
    raise AssertionError("handshake did not complete")


def _records(wire: bytes) -> Iterator[tuple[int, int]]:
    """(content type, length) of each TLS record in `wire`."""
    pos = 0
    while pos < len(wire):
        assert len(wire) - pos >= 5, "truncated record header"
        length = int.from_bytes(wire[pos + 3 : pos + 5], "big")
        yield wire[pos], length
        pos += 5 + length
    assert pos == len(wire)


@pytest.fixture(scope="module")
def client_settings(pki: Pems) -> TlsSettings:
    return _settings(pki, "client", remote_cert_tls="server")


@pytest.fixture(scope="module")
def server_settings(pki: Pems) -> TlsSettings:
    return _settings(pki, "server", remote_cert_tls="client")


@pytest.fixture
def pair(client_settings: TlsSettings, server_settings: TlsSettings) -> tuple[TlsSession, ...]:
    return _sessions(client_settings, server_settings)


# -- handshakes and the KM2 ordering --------------------------------------------------------


def test_tls13_handshake_and_identities(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    assert client.read_record() == b""  # nothing before the handshake
    _handshake(client, server)
    assert client.version == server.version == "TLSv1.3"
    assert client.peer_common_name == "server"
    assert server.peer_common_name == "client"
    assert server.peer_subject == "CN=client"
    # num_tickets = 0: the server sends nothing after the client's Finished.
    assert server.take_outgoing() == b""


def test_tls13_client_km2_rides_with_finished(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    client.write(CLIENT_KM2)  # before anything: queued, not a premature ClientHello
    assert client.take_outgoing() == b""
    assert not client.step()
    server.feed(client.take_outgoing())  # ClientHello
    assert not server.step()
    client.feed(server.take_outgoing())  # ServerHello ... server Finished
    assert client.step()  # TLS 1.3 client completes as it writes its Finished
    flight = client.take_outgoing()
    # client Certificate, CertificateVerify, Finished and the KM2: all one flight.
    assert [t for t, _ in _records(flight)][-1] == TLS_APPLICATION_DATA
    server.feed(flight)
    assert server.step()
    # Read in the same turn: the KM2 is already here, no more input needed.
    assert server.read_record() == CLIENT_KM2
    assert server.read_record() == b""
    server.write(SERVER_KM2)  # a stock server answers only after reading the client's KM2
    client.feed(server.take_outgoing())
    assert client.read_record() == SERVER_KM2


def test_tls13_km2_written_right_after_completion(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    _handshake(client, server)
    client.write(CLIENT_KM2)
    server.feed(client.take_outgoing())
    assert server.read() == CLIENT_KM2
    server.write(SERVER_KM2)
    client.feed(server.take_outgoing())
    assert client.read() == SERVER_KM2


@pytest.mark.parametrize("capped", ["client", "server", "both"])
def test_tls12(pki: Pems, capped: str) -> None:
    client_settings = _settings(
        pki,
        "client",
        remote_cert_tls="server",
        tls_version_max="1.2" if capped != "server" else None,
    )
    server_settings = _settings(
        pki,
        "server",
        remote_cert_tls="client",
        tls_version_max="1.2" if capped != "client" else None,
    )
    client, server = _sessions(client_settings, server_settings)
    client.write(CLIENT_KM2)  # early write, as a stock client does
    rounds = 0
    while not (client.handshake_complete and server.handshake_complete):
        rounds += 1
        assert rounds < 10
        client.step()
        server.feed(client.take_outgoing())
        if not server.handshake_complete and server.step():
            # TLS 1.2: the client completes only after the server's Finished, so its KM2
            # cannot have arrived together with the handshake.
            assert server.read_record() == b""
        client.feed(server.take_outgoing())
    assert client.version == server.version == "TLSv1.2"
    client.step()  # nothing new; the queued KM2 already went out with completion
    server.feed(client.take_outgoing())
    assert server.read_record() == CLIENT_KM2
    server.write(SERVER_KM2)
    client.feed(server.take_outgoing())
    assert client.read_record() == SERVER_KM2


def test_fresh_session_per_key_reuses_context(
    client_settings: TlsSettings, server_settings: TlsSettings
) -> None:
    client_ctx = make_context(client_settings, server_side=False)
    server_ctx = make_context(server_settings, server_side=True)
    for _ in range(3):  # key_id 0, 1, 2: each a full new handshake
        client = TlsSession(client_ctx, server_side=False, settings=client_settings)
        server = TlsSession(server_ctx, server_side=True, settings=server_settings)
        _handshake(client, server)
        assert server.peer_common_name == "client"


def _resume(server_ctx: ssl.SSLContext, server_settings: TlsSettings, pki: Pems) -> TlsSession:
    """Handshake twice with a raw TLS 1.2 client that offers the first session again; return
    the server's second TlsSession (its step() may have raised HandshakeError)."""
    client_ctx = make_context(_settings(pki, "client", tls_version_max="1.2"), server_side=False)
    client_ctx.options &= ~ssl.OP_NO_TICKET  # an arbitrary client, not ours: it takes tickets
    session = None
    server = None
    for _ in range(2):
        c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        raw = client_ctx.wrap_bio(c_in, c_out, session=session)
        server = TlsSession(server_ctx, server_side=True, settings=server_settings)
        for _ in range(6):
            with contextlib.suppress(ssl.SSLWantReadError):
                raw.do_handshake()
            server.feed(c_out.read())
            try:
                done = server.step()
            except HandshakeError:
                return server
            c_in.write(server.take_outgoing())
            if done:
                raw.do_handshake()  # the server's Finished completes the client
                break
        assert raw.session is not None
        session = raw.session
    assert server is not None
    return server


def test_our_server_context_does_not_resume(pki: Pems, server_settings: TlsSettings) -> None:
    server_ctx = make_context(server_settings, server_side=True)
    server = _resume(server_ctx, server_settings, pki)
    assert server.handshake_complete  # a full handshake: the offered session missed


def test_server_refuses_a_resumed_session(pki: Pems, server_settings: TlsSettings) -> None:
    """Python cannot switch OpenSSL's session cache off; with tickets allowed a TLS 1.2 client
    does resume. OpenVPN wants a full handshake per key, so TlsSession refuses it."""
    server_ctx = make_context(server_settings, server_side=True)
    server_ctx.options &= ~ssl.OP_NO_TICKET
    server = _resume(server_ctx, server_settings, pki)
    assert server.failure is not None
    assert "resumed an earlier TLS session" in server.failure


# -- records ----------------------------------------------------------------------------------


def test_each_write_is_one_record_up_to_2048(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    _handshake(client, server)
    messages = [b"a" * MAX_RECORD_PLAINTEXT, b"PUSH_REQUEST\0", b"b" * 1000]
    for message in messages:
        client.write(message)
        wire = client.take_outgoing()
        assert [t for t, _ in _records(wire)] == [TLS_APPLICATION_DATA]
        server.feed(wire)
    # Record boundaries survive: one read_record per write, as the stock reader expects.
    assert [server.read_record() for _ in messages] == messages
    assert server.read_record() == b""


def test_read_joins_available_records(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    _handshake(client, server)
    client.write(b"one\0")
    client.write(b"two\0")
    server.feed(client.take_outgoing())
    assert server.read() == b"one\0two\0"
    assert server.read() == b""


def test_record_size_limits(pair: tuple[TlsSession, TlsSession]) -> None:
    client, _ = pair
    with pytest.raises(ValueError, match="2048"):
        client.write(b"x" * (MAX_RECORD_PLAINTEXT + 1))
    with pytest.raises(ValueError, match="empty"):
        client.write(b"")


def test_record_split_across_feeds(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    _handshake(client, server)
    client.write(CLIENT_KM2)
    wire = client.take_outgoing()
    for i in range(0, len(wire), 100):  # control payload chunks arrive one by one
        assert server.read_record() == b""
        server.feed(wire[i : i + 100])
    assert server.read_record() == CLIENT_KM2


def test_peer_close_notify(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    _handshake(client, server)
    c_ssl: ssl.SSLObject = client._ssl
    with pytest.raises(ssl.SSLWantReadError):
        c_ssl.unwrap()
    server.feed(client.take_outgoing())
    assert server.read() == b""
    assert server.closed


# -- certificate trust ----------------------------------------------------------------------


def test_server_refuses_client_from_other_ca(pki: Pems, other_pki: Pems) -> None:
    client, server = _sessions(
        _settings(other_pki, "intruder", ca=pki),
        _settings(pki, "server"),
    )
    with pytest.raises(HandshakeError) as info:
        _handshake(client, server)
    assert str(info.value) == (
        "TLS handshake failed: certificate verify failed: unable to get local issuer certificate"
    )
    assert server.failure == str(info.value)
    # The alert the server produced tells the client why.
    alert = server.take_outgoing()
    assert alert
    client.feed(alert)
    with pytest.raises(HandshakeError, match="alert"):
        client.read_record()


def test_client_refuses_server_from_other_ca(pki: Pems, other_pki: Pems) -> None:
    client, server = _sessions(
        _settings(pki, "client"),
        _settings(other_pki, "server", ca=pki),
    )
    with pytest.raises(HandshakeError, match="certificate verify failed") as info:
        _handshake(client, server)
    assert "\n" not in str(info.value)
    assert not client.handshake_complete
    assert client.peer_common_name is None


def test_failed_session_stays_failed(pki: Pems, other_pki: Pems) -> None:
    client, server = _sessions(_settings(other_pki, "intruder", ca=pki), _settings(pki, "server"))
    with pytest.raises(HandshakeError):
        _handshake(client, server)
    for call in (server.step, server.read_record, server.read, lambda: server.feed(b"x")):
        with pytest.raises(HandshakeError, match="certificate verify failed"):
            call()
    with pytest.raises(HandshakeError):
        server.write(b"late")


def test_client_eku_cert_presented_as_server_is_refused(pki: Pems) -> None:
    """OpenSSL's own purpose check already refuses it (as in a stock peer)."""
    client, server = _sessions(
        _settings(pki, "client", remote_cert_tls="server"),
        _settings(pki, "client"),  # the server presents the client certificate
    )
    with pytest.raises(HandshakeError, match="unsuitable certificate purpose"):
        _handshake(client, server)


def test_remote_cert_tls_server_needs_eku(pki: Pems) -> None:
    # No EKU at all passes OpenSSL's purpose check; remote-cert-tls must catch it.
    server = _custom(pki, _cn("server"), eku=None)
    client, srv = _sessions(_settings(pki, "client", remote_cert_tls="server"), server)
    with pytest.raises(HandshakeError) as info:
        _handshake(client, srv)
    assert str(info.value) == (
        "peer certificate lacks EKU serverAuth required by remote-cert-tls server"
    )
    # Without remote-cert-tls the same certificate is fine.
    client, srv = _sessions(_settings(pki, "client"), server)
    _handshake(client, srv)


def test_remote_cert_tls_server_needs_key_usage(pki: Pems) -> None:
    server = _custom(pki, _cn("server"), key_usage=False, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    client, srv = _sessions(_settings(pki, "client", remote_cert_tls="server"), server)
    with pytest.raises(
        HandshakeError, match="lacks the keyUsage extension required by remote-cert-tls server"
    ):
        _handshake(client, srv)


def test_remote_cert_tls_client_needs_eku(pki: Pems) -> None:
    client_settings = _custom(pki, _cn("client"), eku=None)
    client, server = _sessions(client_settings, _settings(pki, "server", remote_cert_tls="client"))
    with pytest.raises(
        HandshakeError, match="lacks EKU clientAuth required by remote-cert-tls client"
    ):
        _handshake(client, server)
    assert server.peer_common_name is None


def test_cn_is_required(pki: Pems) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "NoName Inc")])
    client, server = _sessions(_custom(pki, subject), _settings(pki, "server"))
    with pytest.raises(HandshakeError, match=r"^VERIFY ERROR: could not extract CN") as info:
        _handshake(client, server)
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
    server = _custom(pki, FULL_SUBJECT, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    client_settings = _settings(pki, "client", remote_cert_tls="server", verify_x509_name=expected)
    client, srv = _sessions(client_settings, server)
    if accepted:
        _handshake(client, srv)
        assert client.peer_common_name == "vpn-server-01"
        assert client.peer_subject == "C=US, O=Example, CN=vpn-server-01"
    else:
        with pytest.raises(HandshakeError, match="verify-x509-name"):
            _handshake(client, srv)


def test_verify_x509_name_mismatch_message(pki: Pems) -> None:
    client, server = _sessions(
        _settings(pki, "client", verify_x509_name=("other", "name")), _settings(pki, "server")
    )
    with pytest.raises(HandshakeError) as info:
        _handshake(client, server)
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
    cert, _ = _issue(pki, name)
    return x509.load_pem_x509_certificate(cert.encode())


def test_openvpn_subject_format(pki: Pems) -> None:
    cert = _roundtrip(ODD_SUBJECT, pki)
    assert openvpn_subject(cert.subject) == (
        "C=DE, OU=u + O=x,y, emailAddress=a@b.c, DC=dc, 1.2.3.4.5=unknown, "
        'CN=a\\7Fb\\01c\\\\d\u00e9\u65e5 "<>;=#'
    )


def test_openvpn_subject_simple_and_empty() -> None:
    assert openvpn_subject(_cn("server")) == "CN=server"
    assert openvpn_subject(x509.Name([])) == ""


@pytest.mark.openssl
def test_openvpn_subject_matches_openssl_cli(pki: Pems, tmp_path: Path) -> None:
    """Same flags as ssl_verify_openssl.c: x509_get_subject(), through the openssl CLI."""
    cert, _ = _issue(pki, ODD_SUBJECT)
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
    tab = verify_peer_certificate(der(_cn("a\tb")), s)
    assert tab.common_name == "a_b"  # string_mod_remap_name
    with pytest.raises(HandshakeError, match="could not extract CN"):
        verify_peer_certificate(der(_cn("evil\0suffix")), s)
    with pytest.raises(HandshakeError, match="could not parse"):
        verify_peer_certificate(b"\x30\x03junk", s)


# -- garbage ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contexts(
    client_settings: TlsSettings, server_settings: TlsSettings
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return (
        make_context(client_settings, server_side=False),
        make_context(server_settings, server_side=True),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(min_size=1, max_size=3000))
def test_garbage_to_server_is_a_handshake_error(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    server_settings: TlsSettings,
    garbage: bytes,
) -> None:
    server = TlsSession(contexts[1], server_side=True, settings=server_settings)
    server.feed(garbage)
    try:
        done = server.step()
    except HandshakeError as exc:
        assert str(exc).startswith("TLS handshake failed: ")
        return
    assert not done  # a plausible but incomplete record just waits for more


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(min_size=1, max_size=3000))
def test_garbage_to_client_is_a_handshake_error(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    client_settings: TlsSettings,
    garbage: bytes,
) -> None:
    client = TlsSession(contexts[0], server_side=False, settings=client_settings)
    client.step()
    client.take_outgoing()
    client.feed(garbage)
    with contextlib.suppress(HandshakeError):
        assert not client.step()


def test_random_garbage_fails_clearly(contexts: tuple[ssl.SSLContext, ssl.SSLContext],
                                      server_settings: TlsSettings) -> None:  # fmt: skip
    server = TlsSession(contexts[1], server_side=True, settings=server_settings)
    server.feed(random.Random(1).randbytes(512))
    with pytest.raises(HandshakeError, match=r"^TLS handshake failed: "):
        server.step()


def test_garbage_after_handshake_is_a_handshake_error(
    pair: tuple[TlsSession, TlsSession],
) -> None:
    client, server = pair
    _handshake(client, server)
    # A well-formed application-data header with a body that cannot decrypt.
    server.feed(bytes([TLS_APPLICATION_DATA, 3, 3, 0, 64]) + random.Random(2).randbytes(64))
    with pytest.raises(HandshakeError, match=r"^TLS error after the handshake: "):
        server.read_record()


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
        _settings(pki, "client", tls_version_min="1.3", tls_version_max="1.3"), server_side=False
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


def test_settings_repr_hides_secrets(pki: Pems) -> None:
    s = _settings(pki, "client", key_password="hunter2")
    text = repr(s)
    assert "PRIVATE KEY" not in text
    assert "hunter2" not in text
    assert "BEGIN CERTIFICATE" in text


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
    make_context(_settings(pki, "client"), server_side=False)
    with pytest.raises(ConfigError):
        make_context(TlsSettings(ca=pki["ca.crt"].decode(), cert=pki["client.crt"].decode(),
                                 key=pki["server.key"].decode()), server_side=False)  # fmt: skip
    assert created
    for path in created:
        assert not Path(path).exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"remote_cert_tls": "peer"},
        {"verify_x509_name": ("server", "cn")},
        {"verify_x509_name": ("", "name")},
        {"tls_version_min": "1.4"},
        {"tls_version_min": "1.3", "tls_version_max": "1.2"},
        {"tls_version_max": "tls1.2"},
    ],
)
def test_settings_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TlsSettings(ca="", cert="", key="", **kwargs)  # type: ignore[arg-type]
