"""Malformed control packets reaching an established session: the codec's Buffer bounds refuse
them as ProtocolError inside the session, each one is a counted drop (never an exception), and
the session's control state (reliability windows, ACKs, phase) is what it was."""

from __future__ import annotations

from collections.abc import Callable

from core import Buffer
from tests.protocol.harness import Pair
from tunnel.protocol.codec import write_control
from tunnel.protocol.constants import Opcode
from tunnel.protocol.drops import AUTH_FAILED, MALFORMED
from tunnel.protocol.session import Session
from tunnel.protocol.verdicts import CONSUMED, TO_TUN
from tunnel.protocol.wrap import PLAIN, ControlWrap, TlsCryptWrap
from tunnel.protocol.wrap.base import control_frame

from .test_wrap import CRYPT_KEY

OTHER_SID = bytes.fromhex("0102030405060708")


def _state(session: Session) -> object:
    return (
        session.closed,
        session.remote_sid,
        [
            (key.key_id, key.phase, key.reliable.next_expected_pid, key.reliable.next_send_pid,
             key.reliable.outstanding_pids, key.reliable.next_deadline(),
             key.reliable.duplicates, key.reliable.dropped_out_of_window)
            for key in session.keys
        ],
    )


def _malformed(sid: bytes, remote: bytes) -> list[bytes]:
    """Plain control packets from `sid` that fail a bound or a field check of the codec."""
    op = bytes([Opcode.P_CONTROL_V1 << 3])
    ack = bytes([Opcode.P_ACK_V1 << 3])
    good = op + sid + b"\x01" + bytes(4) + remote + (7).to_bytes(4, "big") + b"tls"
    cases = [good[:cut] for cut in range(1, 26)]  # every cut short of a whole header
    cases += [
        op + sid + b"\x08" + bytes(8),  # 8 ACK ids announced, 2 there
        op + sid + b"\x09" + bytes(36) + remote + bytes(4),  # 9 ACK ids
        op + sid + b"\xff" + bytes(1200),  # 255 ACK ids
        op + sid + b"\x01" + bytes(4) + bytes(8) + bytes(4),  # zero remote sid
        ack + sid + b"\x00",  # P_ACK_V1 without ids
        ack + sid + b"\x01" + bytes(4) + remote + b"\x00",  # a trailing byte
        bytes([12 << 3]) + sid + b"\x00" + bytes(4),  # unknown opcode
        bytes([1 << 3]) + sid + b"\x00" + bytes(4),  # key-method 1
    ]
    return cases


def test_plain_malformed_packets_are_counted_drops_and_change_nothing() -> None:
    pair = Pair()
    pair.connect()
    [session] = pair.server.sessions
    client = pair.client.session
    pair.run(1)
    before_server, before_client = _state(session), _state(client)
    cases = _malformed(client.local_sid, session.local_sid)
    for datagram in cases:
        assert pair.to_server(datagram) == CONSUMED
        assert pair.to_client(datagram) == CONSUMED
    assert _state(session) == before_server
    assert _state(client) == before_client
    # Shorter than op|sid too: malformed, not a failed authentication (there is no tag to
    # fail without tls-auth/tls-crypt; stock: "TLS State Error: Too short packet").
    assert sum(len(d) < 9 for d in cases) == 8
    for side in (pair.server, pair.client):
        counts = side.drops.counts
        assert (counts[MALFORMED], counts[AUTH_FAILED]) == (len(cases), 0), counts
    # and the tunnel carries on
    sealed = pair.client_sends(b"still up")
    assert sealed is not None and pair.to_server(sealed) == TO_TUN


def _sealed(wrap: ControlWrap, channel_seal: Callable[[Buffer, float], None], plain: bytes,
            now: float) -> bytes:
    frame = control_frame(wrap)
    buf = Buffer(frame.buffer_size)
    buf.reset(frame.headroom)
    buf.append(plain)
    channel_seal(buf, now)
    return bytes(buf.data)


def test_authenticated_but_malformed_packets_change_nothing() -> None:
    """A packet whose wrap tag verifies (the peer's key) but whose inner packet is malformed:
    the codec refuses it after the wrap opened it in place; counted, nothing else moves."""
    server_wrap = TlsCryptWrap.from_key(CRYPT_KEY, server=True)
    client_wrap = TlsCryptWrap.from_key(CRYPT_KEY, server=False)
    pair = Pair(server_wrap=server_wrap, client_wrap=client_wrap)
    pair.connect()
    [session] = pair.server.sessions
    client = pair.client.session
    pair.run(1)
    before = _state(session)
    cases = _malformed(client.local_sid, session.local_sid)
    for plain in cases:
        if len(plain) < 9:
            continue  # no op|sid to keep in clear: the wrap's own bound refuses it
        datagram = _sealed(client_wrap, client.wrap_channel.seal, plain, pair.now)
        assert pair.to_server(datagram) == CONSUMED
    counted = sum(len(p) >= 9 for p in cases)
    assert pair.server.drops.counts[MALFORMED] == counted
    assert _state(session) == before
    sealed = pair.client_sends(b"still up")
    assert sealed is not None and pair.to_server(sealed) == TO_TUN


def test_ack_for_another_session_changes_nothing() -> None:
    """A well-formed packet the reliability layer refuses (ACKs naming another session)."""
    pair = Pair()
    pair.connect()
    [session] = pair.server.sessions
    client = pair.client.session
    pair.run(1)
    before = _state(session)
    buf = Buffer(128)
    buf.reset(64)
    write_control(buf, Opcode.P_ACK_V1, 0, client.local_sid, (0, 1), OTHER_SID)
    assert pair.to_server(bytes(buf.data)) == CONSUMED
    assert _state(session) == before
    assert session.dropped_control == 1


def test_shorter_than_op_and_session_id_is_malformed_under_every_wrap_and_from_anyone() -> None:
    """stock's tls_pre_decrypt_lite checks the length (1 + SID_SIZE) before the wrap: a too
    short datagram is malformed for a session and for an unknown source, plain or tls-crypt."""
    short = [bytes([Opcode.P_CONTROL_V1 << 3]) + bytes(n) for n in range(8)]
    short.append(bytes([Opcode.P_CONTROL_HARD_RESET_CLIENT_V2 << 3]) + bytes(7))
    crypt = (TlsCryptWrap.from_key(CRYPT_KEY, server=True),
             TlsCryptWrap.from_key(CRYPT_KEY, server=False))
    wraps: tuple[tuple[ControlWrap, ControlWrap], ...] = ((PLAIN, PLAIN), crypt)
    for server_wrap, client_wrap in wraps:
        pair = Pair(server_wrap=server_wrap, client_wrap=client_wrap)
        pair.connect()
        pair.run(1)
        for datagram in short:
            assert pair.to_server(datagram) == CONSUMED
            assert pair.to_client(datagram) == CONSUMED
            pair.to_server_from(datagram, ("192.0.2.99", 4000))
        assert pair.server.drops.counts[MALFORMED] == 2 * len(short), server_wrap.name
        assert pair.server.drops.counts[AUTH_FAILED] == 0, server_wrap.name
        assert pair.client.drops.counts[MALFORMED] == len(short), server_wrap.name
        assert pair.client.drops.counts[AUTH_FAILED] == 0, server_wrap.name
        assert pair.server.half_open == 0 and len(pair.server.sessions) == 1
        sealed = pair.client_sends(b"still up")
        assert sealed is not None and pair.to_server(sealed) == TO_TUN
