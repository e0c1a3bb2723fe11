"""The wraps in the server and the session: the stateless cookie path with a stock client's
captured reset, wrong-key packets that leave no state, renegotiation through the wrap."""

from __future__ import annotations

import os
import tracemalloc

from core import Buffer
from tunnel.protocol.codec import parse_control
from tunnel.protocol.constants import Opcode
from tunnel.protocol.wrap import ControlWrap, TlsAuthWrap, TlsCryptWrap, parse_static_key

from . import wrap_vectors as v
from .harness import CLIENT_ADDR, Pair

KEY = parse_static_key(v.TLS_AUTH_SHA1_KEY_FILE)
CRYPT_KEY = parse_static_key(v.TLS_CRYPT_KEY_FILE)


def buf_of(datagram: bytes) -> Buffer:
    buf = Buffer(2048)
    buf.reset(128)
    buf.append(datagram)
    return buf


def test_stateless_answer_to_a_stock_reset() -> None:
    """A stock client's tls-auth reset (captured): answered, wrapped, with packet-id 1, and no
    state kept; what we send opens with the stock client's key direction."""
    pair = Pair(client_wrap=TlsAuthWrap(KEY, 1), server_wrap=TlsAuthWrap(KEY, 0))
    server = pair.server
    server.receive(buf_of(v.TLS_AUTH_SHA1_CLIENT_RESET), CLIENT_ADDR, pair.now)
    assert server.sessions == []
    out = server.datagrams_to_send(pair.now)
    assert len(out) == 1 and out[0][1] == CLIENT_ADDR
    client_wrap = TlsAuthWrap(KEY, 1)
    answer = buf_of(out[0][0])
    opened = client_wrap.open(answer)
    assert opened is not None and opened.packet_id == 1
    packet = parse_control(answer.data)
    assert packet.opcode is Opcode.P_CONTROL_HARD_RESET_SERVER_V2
    assert packet.acks == (0,) and packet.remote_session_id == v.TLS_AUTH_SHA1_CLIENT_RESET[1:9]


def wrong_key_flood(server_wrap: ControlWrap, client_wrap: ControlWrap, attacker: ControlWrap,
                    count: int, *, v3: bool = False) -> None:
    pair = Pair(client_wrap=client_wrap, server_wrap=server_wrap)
    server = pair.server
    plain = Buffer(2048)
    attacker_channel = attacker.channel()
    datagrams = []
    for i in range(64):
        plain.reset(128)
        # A reset, and a cookie echo with ACK 0 - what would create a session if it verified.
        reset = (Opcode.P_CONTROL_HARD_RESET_CLIENT_V3 if v3
                 else Opcode.P_CONTROL_HARD_RESET_CLIENT_V2)
        if i % 2:
            plain.append(bytes([reset << 3]) + os.urandom(8) + b"\x00" + bytes(4))
        else:
            plain.append(bytes([Opcode.P_CONTROL_V1 << 3]) + os.urandom(8) + b"\x01"
                         + bytes(4) + os.urandom(8) + (1).to_bytes(4, "big") + b"\x16" * 100)
        attacker_channel.seal(plain, pair.now)
        datagrams.append(bytes(plain.data))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        addr = (f"198.51.{i % 250}.{i % 200 + 1}", 1024 + i % 60000)
        server.receive(buf_of(datagrams[i % len(datagrams)]), addr, pair.now)
        while server.next_event() is not None:
            pass
        assert server.datagrams_to_send(pair.now) == []
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert server.sessions == [] and server.half_open == 0
    assert server.dropped == count
    assert grown < 64 * 1024, grown
    # ... and a client with the right key still connects.
    pair.connect(10)
    assert pair.client.session.send_key is not None


def test_wrong_key_flood_keeps_no_state_tls_auth() -> None:
    wrong_key_flood(TlsAuthWrap(KEY, 0), TlsAuthWrap(KEY, 1), TlsAuthWrap(CRYPT_KEY, 1), 3000)


def test_wrong_key_flood_keeps_no_state_tls_crypt() -> None:
    wrong_key_flood(TlsCryptWrap.from_key(KEY, server=True),
                    TlsCryptWrap.from_key(KEY, server=False),
                    TlsCryptWrap.from_key(CRYPT_KEY, server=False), 3000)


def test_renegotiation_and_replay_through_the_wrap() -> None:
    pair = Pair(client_wrap=TlsCryptWrap.from_key(KEY, server=False),
                server_wrap=TlsCryptWrap.from_key(KEY, server=True))
    pair.connect(10)
    session = pair.server.sessions[0]
    assert pair.client.session.renegotiate(pair.now)
    pair.run(5)
    assert pair.client.session.renegotiations == 1 and session.renegotiations == 1
    # A datagram the server already accepted comes again: refused by the replay window.
    sent = []
    pair.client.session.send_control_message("HELLO")
    for datagram, _addr in pair.client.datagrams_to_send(pair.now):
        sent.append(datagram)
    assert sent
    # After the renegotiation the message goes on key_id 1: with dynamic tls-crypt (both
    # sides ours, the exporter reachable) through the renegotiation channel.
    channel = session.reneg_channel or session.wrap_channel
    before = channel.replayed
    for datagram in sent:
        pair.server.receive(buf_of(datagram), CLIENT_ADDR, pair.now)
        pair.server.receive(buf_of(datagram), CLIENT_ADDR, pair.now)
    assert channel.replayed == before + len(sent)


def test_v2_flood_with_keys_for_another_server_keeps_no_state() -> None:
    """V3 resets and WKC_V1 packets with a client key wrapped for another server key (or
    garbage): refused by the unwrap, nothing kept; the real client still connects."""
    from tunnel.protocol.wrap import ServerKey, TlsCryptV2ClientWrap, TlsCryptV2ServerWrap
    from tunnel.protocol.wrap.v2keys import generate_client_key

    server_key = ServerKey.generate()
    good = generate_client_key(server_key, user_metadata=b"good", now=0)
    foreign = generate_client_key(ServerKey.generate(), user_metadata=b"evil", now=0)
    attacker = TlsCryptV2ClientWrap(foreign, resend_wkc=True)
    wrong_key_flood(TlsCryptV2ServerWrap(server_key), TlsCryptV2ClientWrap(good),
                    attacker, 2000, v3=True)


def test_dynamic_tls_crypt_between_two_of_ours() -> None:
    """Both announce it: the server pushes dyn-tls-crypt, both derive the same renegotiation
    key from the exporter (XORed with the configured key), renegotiations go through it."""
    from tunnel.protocol.ekm import supported
    from tunnel.protocol.wrap.dynamic import DYNAMIC_TLS_CRYPT_LABEL

    if not supported():  # pragma: no cover - CPython with OpenSSL everywhere we run
        return
    pair = Pair(client_wrap=TlsAuthWrap(KEY, 1), server_wrap=TlsAuthWrap(KEY, 0))
    pair.connect(10)
    client, server = pair.client.session, pair.server.sessions[0]
    assert client.pushed is not None and "dyn-tls-crypt" in client.pushed.protocol_flags
    assert client.reneg_channel is not None and server.reneg_channel is not None
    exported = [s.keys[0].tls.export_keying_material(DYNAMIC_TLS_CRYPT_LABEL, 256)
                for s in (client, server)]
    assert exported[0] is not None and exported[0] == exported[1]
    for _ in range(2):
        assert client.renegotiate(pair.now)
        pair.run(5)
    assert client.renegotiations == 2 and server.renegotiations == 2
    assert server.reneg_channel.dropped == 0 and client.reneg_channel.dropped == 0
