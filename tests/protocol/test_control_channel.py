"""ControlChannel (control_channel.py): which wrap a control datagram goes through, both ways."""

from __future__ import annotations

import dataclasses

import pytest

from core import Buffer
from tests.protocol.harness import tls_settings
from tests.protocol.tls_helpers import handshake, session_pair
from tunnel.protocol.codec import ControlPacket, build_control
from tunnel.protocol.constants import Opcode
from tunnel.protocol.control_channel import ControlChannel
from tunnel.protocol.settings import SessionSettings
from tunnel.protocol.wrap import PLAIN, TlsAuthWrap, parse_static_key
from tunnel.runtime import session_settings

from . import wrap_vectors as v

KEY = parse_static_key(v.TLS_AUTH_SHA1_KEY_FILE)


def settings_with(wrap: object, role: str) -> SessionSettings:
    base = session_settings(is_client=role == "client", tls=tls_settings(role))
    return dataclasses.replace(base, control_wrap=wrap, dyn_tls_crypt=True)  # type: ignore[arg-type]


def datagram(key_id: int, sid: bytes = b"\x01" * 8) -> bytes:
    return bytes(build_control(ControlPacket(Opcode.P_CONTROL_V1, key_id, sid, packet_id=0,
                                             payload=b"tls bytes")))


def buf_of(data: bytes) -> Buffer:
    buf = Buffer(2048)
    buf.reset(128)
    buf.append(data)
    return buf


def sealed(channel: ControlChannel, data: bytes, now: float) -> bytes:
    """What the session does: the datagram in the channel's pooled block, sealed in place."""
    buf = channel.pool.acquire()
    try:
        buf.append(data)
        channel.seal(buf, now)
        return bytes(buf.data)
    finally:
        channel.pool.release(buf)


def channels() -> tuple[ControlChannel, ControlChannel]:
    client = ControlChannel(settings_with(TlsAuthWrap(KEY, 1), "client"), server=False)
    server = ControlChannel(settings_with(TlsAuthWrap(KEY, 0), "server"), server=True)
    return client, server


def test_without_a_wrap_datagrams_pass_unchanged() -> None:
    plain = ControlChannel(settings_with(PLAIN, "client"), server=False)
    assert sealed(plain, datagram(0), 1.0) == datagram(0)
    assert plain.open(buf_of(datagram(0)), 1.0)


def test_tls_auth_both_ways_and_a_replay_is_refused() -> None:
    client, server = channels()
    wire = sealed(client, datagram(0), 10.0)
    assert wire != datagram(0)
    received = buf_of(wire)
    assert server.open(received, 10.0) and bytes(received.data) == datagram(0)
    assert not server.open(buf_of(wire), 10.0)  # the same packet-id again
    assert server.initial.replayed == 1
    # No dynamic wrap agreed: renegotiations use the configured one too.
    assert server.open(buf_of(sealed(client, datagram(1), 11.0)), 11.0)


def test_dynamic_tls_crypt_takes_over_key_ids_above_zero() -> None:
    from tunnel.protocol.ekm import supported

    if not supported():  # pragma: no cover - CPython with OpenSSL everywhere we run
        pytest.skip("no TLS exporter in this OpenSSL")
    client, server = channels()
    assert not client.start_dynamic(None) and client.reneg is None
    tls_client, tls_server = session_pair(tls_settings("client"), tls_settings("server"))
    handshake(tls_client, tls_server)
    assert client.start_dynamic(tls_client) and server.start_dynamic(tls_server)
    assert client.start_dynamic(None)  # already agreed: stays
    wire = sealed(client, datagram(1), 20.0)
    assert server.open(buf_of(wire), 20.0)
    assert server.reneg is not None and server.initial.dropped == 0
    # key_id 0 still goes through the configured wrap, which cannot open the dynamic one.
    assert server.open(buf_of(sealed(client, datagram(0), 21.0)), 21.0)
    assert not ControlChannel(settings_with(TlsAuthWrap(KEY, 0), "server"),
                              server=True).open(buf_of(wire), 22.0)
