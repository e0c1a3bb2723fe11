"""Fixtures of the TLS tests (test_tls, test_tls_context, test_tls_settings, test_x509_checks)."""

from __future__ import annotations

import pytest

from tests.protocol.tls_helpers import Pems, session_pair, tls_for
from tunnel.pki import generate_pki_in_memory
from tunnel.protocol.tls import TlsSession
from tunnel.protocol.tls_settings import TlsSettings


@pytest.fixture(scope="module")
def pki() -> Pems:
    return generate_pki_in_memory(client_cns=("client",), ca_cn="test CA")


@pytest.fixture(scope="module")
def other_pki() -> Pems:
    """An independent CA with its own client and server: trusted by nobody in these tests."""
    return generate_pki_in_memory(client_cns=("intruder",), ca_cn="other CA")


@pytest.fixture(scope="module")
def client_settings(pki: Pems) -> TlsSettings:
    return tls_for(pki, "client", remote_cert_tls="server")


@pytest.fixture(scope="module")
def server_settings(pki: Pems) -> TlsSettings:
    return tls_for(pki, "server", remote_cert_tls="client")


@pytest.fixture
def pair(client_settings: TlsSettings, server_settings: TlsSettings) -> tuple[TlsSession, ...]:
    return session_pair(client_settings, server_settings)


