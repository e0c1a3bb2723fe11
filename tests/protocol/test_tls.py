"""TlsSession (tls.py), all in memory: handshakes between two sessions, the KM2 ordering of
OPENVPN-WIRE.md section 5, resumption refused, record limits, chain trust and garbage input.
"""

from __future__ import annotations

import contextlib
import random
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol.tls_helpers import (
    CLIENT_KM2,
    SERVER_KM2,
    TLS_APPLICATION_DATA,
    Pems,
    handshake,
    session_pair,
    tls_for,
    tls_records,
)
from tunnel.protocol.errors import HandshakeError
from tunnel.protocol.tls import MAX_RECORD_PLAINTEXT, TlsSession
from tunnel.protocol.tls_context import make_context
from tunnel.protocol.tls_settings import TlsSettings

# -- handshakes and the KM2 ordering --------------------------------------------------------


def test_tls13_handshake_and_identities(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    assert client.read_record() == b""  # nothing before the handshake
    handshake(client, server)
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
    assert [t for t, _ in tls_records(flight)][-1] == TLS_APPLICATION_DATA
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
    handshake(client, server)
    client.write(CLIENT_KM2)
    server.feed(client.take_outgoing())
    assert server.read() == CLIENT_KM2
    server.write(SERVER_KM2)
    client.feed(server.take_outgoing())
    assert client.read() == SERVER_KM2


@pytest.mark.parametrize("capped", ["client", "server", "both"])
def test_tls12(pki: Pems, capped: str) -> None:
    client_settings = tls_for(
        pki,
        "client",
        remote_cert_tls="server",
        tls_version_max="1.2" if capped != "server" else None,
    )
    server_settings = tls_for(
        pki,
        "server",
        remote_cert_tls="client",
        tls_version_max="1.2" if capped != "client" else None,
    )
    client, server = session_pair(client_settings, server_settings)
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
        handshake(client, server)
        assert server.peer_common_name == "client"


def _resume(server_ctx: ssl.SSLContext, server_settings: TlsSettings, pki: Pems) -> TlsSession:
    """Handshake twice with a raw TLS 1.2 client that offers the first session again; return
    the server's second TlsSession (its step() may have raised HandshakeError)."""
    client_ctx = make_context(tls_for(pki, "client", tls_version_max="1.2"), server_side=False)
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
    handshake(client, server)
    messages = [b"a" * MAX_RECORD_PLAINTEXT, b"PUSH_REQUEST\0", b"b" * 1000]
    for message in messages:
        client.write(message)
        wire = client.take_outgoing()
        assert [t for t, _ in tls_records(wire)] == [TLS_APPLICATION_DATA]
        server.feed(wire)
    # Record boundaries survive: one read_record per write, as the stock reader expects.
    assert [server.read_record() for _ in messages] == messages
    assert server.read_record() == b""


def test_read_joins_available_records(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    handshake(client, server)
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
    handshake(client, server)
    client.write(CLIENT_KM2)
    wire = client.take_outgoing()
    for i in range(0, len(wire), 100):  # control payload chunks arrive one by one
        assert server.read_record() == b""
        server.feed(wire[i : i + 100])
    assert server.read_record() == CLIENT_KM2


def test_peer_close_notify(pair: tuple[TlsSession, TlsSession]) -> None:
    client, server = pair
    handshake(client, server)
    c_ssl: ssl.SSLObject = client._ssl
    with pytest.raises(ssl.SSLWantReadError):
        c_ssl.unwrap()
    server.feed(client.take_outgoing())
    assert server.read() == b""
    assert server.closed


# -- certificate trust ----------------------------------------------------------------------


def test_server_refuses_client_from_other_ca(pki: Pems, other_pki: Pems) -> None:
    client, server = session_pair(
        tls_for(other_pki, "intruder", ca=pki),
        tls_for(pki, "server"),
    )
    with pytest.raises(HandshakeError) as info:
        handshake(client, server)
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
    client, server = session_pair(
        tls_for(pki, "client"),
        tls_for(other_pki, "server", ca=pki),
    )
    with pytest.raises(HandshakeError, match="certificate verify failed") as info:
        handshake(client, server)
    assert "\n" not in str(info.value)
    assert not client.handshake_complete
    assert client.peer_common_name is None


def test_failed_session_stays_failed(pki: Pems, other_pki: Pems) -> None:
    client, server = session_pair(tls_for(other_pki, "intruder", ca=pki), tls_for(pki, "server"))
    with pytest.raises(HandshakeError):
        handshake(client, server)
    for call in (server.step, server.read_record, server.read, lambda: server.feed(b"x")):
        with pytest.raises(HandshakeError, match="certificate verify failed"):
            call()
    with pytest.raises(HandshakeError):
        server.write(b"late")


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
    handshake(client, server)
    # A well-formed application-data header with a body that cannot decrypt.
    server.feed(bytes([TLS_APPLICATION_DATA, 3, 3, 0, 64]) + random.Random(2).randbytes(64))
    with pytest.raises(HandshakeError, match=r"^TLS error after the handshake: "):
        server.read_record()
