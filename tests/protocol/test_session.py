"""Client and server state machines against each other in memory, with a fake clock."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol.harness import (
    CLIENT_ADDR,
    SERVER_ADDR,
    SERVER_VIP6,
    Link,
    Pair,
    ip6_packet,
    tls_settings,
)
from tunnel.protocol.client import Client
from tunnel.protocol.events import (
    ClientRefused,
    DataChannelReady,
    HandshakeComplete,
    PushApplied,
    SessionClosed,
)
from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN
from tunnel.runtime import Timers

CIPHERS = ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]


def _connected(pair: Pair) -> None:
    pair.connect()
    assert any(isinstance(e, PushApplied) for e in pair.client_events), pair.client_events
    assert any(isinstance(e, DataChannelReady) for e in pair.client_events)
    assert any(isinstance(e, DataChannelReady) for e in pair.server_events)


@pytest.mark.parametrize("cipher", CIPHERS)
def test_handshake_push_and_data_both_ways(cipher: str) -> None:
    pair = Pair(client_ciphers=(cipher,), server_ciphers=(cipher,))
    _connected(pair)
    session = pair.client.session
    assert session.cipher == cipher
    assert session.tx_peer_id == 0  # P_DATA_V2 with the pushed peer-id
    assert str(pair.client_vip) == "10.8.0.2"
    done = [e for e in pair.server_events if isinstance(e, HandshakeComplete)]
    assert done and done[0].peer_common_name == "client"

    up = pair.client_sends(b"hello server")
    assert up is not None and up[0] >> 3 == 9  # P_DATA_V2
    assert pair.to_server(up) == TO_TUN
    assert pair.to_server_tun[-1].endswith(b"hello server")
    down = pair.server_sends(b"hello client")
    assert down is not None
    assert pair.to_client(down) == TO_TUN
    assert pair.to_client_tun[-1].endswith(b"hello client")


def test_cipher_negotiation_picks_first_server_cipher_the_client_has() -> None:
    pair = Pair(
        client_ciphers=("CHACHA20-POLY1305", "AES-256-GCM"),
        server_ciphers=("AES-256-GCM", "CHACHA20-POLY1305"),
    )
    _connected(pair)
    assert pair.client.session.cipher == "AES-256-GCM"


def test_no_shared_cipher_is_refused_with_auth_failed() -> None:
    pair = Pair(client_ciphers=("CHACHA20-POLY1305",), server_ciphers=("AES-256-GCM",))
    pair.run(15)
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed and "AUTH_FAILED" in closed[0].reason
    assert not closed[0].restart
    assert any(isinstance(e, ClientRefused) for e in pair.server_events)
    assert pair.server.sessions == []


def test_handshake_survives_loss_reordering_and_duplication() -> None:
    link = Link(loss=lambda n: n % 3 == 0, reorder=True, duplicate=True)
    pair = Pair(link=link)
    pair.run(120, step=0.25)
    assert any(isinstance(e, DataChannelReady) for e in pair.client_events), pair.client_events
    up = pair.client_sends(b"through a bad network")
    assert up is not None and pair.to_server(up) == TO_TUN


def test_replayed_data_packet_is_dropped_and_counted() -> None:
    pair = Pair()
    _connected(pair)
    datagram = pair.client_sends(b"once")
    assert datagram is not None
    assert pair.to_server(datagram) == TO_TUN
    assert pair.to_server(datagram) == DROPPED
    key = pair.server.sessions[0].send_key
    assert key is not None and key.replays == 1
    assert len(pair.to_server_tun) == 1


@pytest.mark.parametrize("position", [0, 3, 5, 9, 25, -1])
def test_tampered_data_packet_is_dropped_and_counted(position: int) -> None:
    pair = Pair()
    _connected(pair)
    datagram = bytearray(pair.client_sends(b"do not touch") or b"")
    datagram[position] ^= 0x01
    assert pair.to_server(bytes(datagram)) == DROPPED
    session = pair.server.sessions[0]
    key = session.send_key
    assert key is not None
    if position not in (0, 1, 2, 3):
        assert key.auth_failures == 1
    assert pair.to_server_tun == []


def test_client_with_certificate_from_another_ca_is_refused() -> None:
    pair = Pair(client_tls=tls_settings("client", tag="other"))  # trusts our CA
    pair.run(15)
    refused = [e for e in pair.server_events if isinstance(e, ClientRefused)]
    assert refused, pair.server_events
    assert "certificate" in refused[0].reason.lower()
    assert pair.server.sessions == []
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed or pair.client.session.send_key is None


def test_server_certificate_from_another_ca_is_refused_by_the_client() -> None:
    pair = Pair(server_tls=tls_settings("server", tag="other"))  # trusts our CA
    pair.run(15)
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed and "certificate" in closed[0].reason.lower()
    assert pair.client.session.send_key is None


@pytest.mark.parametrize("initiator", ["client", "server"])
def test_renegotiation_mid_stream_loses_no_packet(initiator: str) -> None:
    pair = Pair()
    _connected(pair)
    delivered = 0
    sent = 0
    side = pair.client if initiator == "client" else pair.server
    for step in range(400):
        if step == 50:
            session = side.session if initiator == "client" else side.sessions[0]  # type: ignore[union-attr]
            assert session.renegotiate(pair.now)
            if initiator == "server":
                pair.server.touch(session)  # driven directly: the server looks at it next
        up = pair.client_sends(b"seq %d" % sent)
        down = pair.server_sends(b"seq %d" % sent)
        assert up is not None and down is not None
        sent += 1
        delivered += pair.to_server(up) == TO_TUN
        delivered += pair.to_client(down) == TO_TUN
        pair.now += 0.01
        pair.pump()
    assert delivered == 2 * sent
    client_key = pair.client.session.send_key
    server_key = pair.server.sessions[0].send_key
    assert client_key is not None and server_key is not None
    assert client_key.key_id == 1 and server_key.key_id == 1
    assert pair.client.session.renegotiations == 1


def test_explicit_exit_notify_closes_the_server_session() -> None:
    pair = Pair(timers=Timers(ping=10, ping_restart=60))
    pair.client.settings.explicit_exit_notify = 1
    _connected(pair)
    assert pair.server.sessions
    pair.client.close(pair.now)
    pair.pump()
    pair.run(1)
    assert pair.server.sessions == []
    assert any(isinstance(e, SessionClosed) for e in pair.server_events)


def test_unknown_source_leaves_no_state_until_the_cookie_is_echoed() -> None:
    pair = Pair()
    reset = pair.client.datagrams_to_send(pair.now)[0][0]
    assert pair.to_server(reset) == CONSUMED
    assert pair.server.sessions == []  # stateless answer only
    answers = pair.server.datagrams_to_send(pair.now)
    assert len(answers) == 1 and answers[0][1] == CLIENT_ADDR
    # The same reset from elsewhere gets a different cookie, and a forged echo is refused.
    forged = bytearray(reset)
    forged[0] = 0x20  # P_CONTROL_V1 with no ACK: must not create state
    pair.to_server(bytes(forged) + b"\x00\x00\x00\x01")
    assert pair.server.sessions == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_garbage_never_raises_creates_no_state_and_leaks_no_buffer(
    datagrams: list[bytes],
) -> None:
    pair = _garbage_pair()
    before = pair.pool.stats.in_use
    for datagram in datagrams:
        pair.to_server(datagram)
    pair.server.handle_timer(pair.now + 1)
    assert pair.server.sessions == []
    assert pair.pool.stats.in_use == before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=11), st.binary(max_size=120))
def test_wrong_opcodes_with_valid_shape_never_raise(opcode: int, tail: bytes) -> None:
    pair = _garbage_pair()
    for key_id in (0, 1, 7):
        pair.to_server(bytes([(opcode << 3) | key_id]) + tail)
        pair.to_client(bytes([(opcode << 3) | key_id]) + tail)
    assert pair.server.sessions == []


_GARBAGE_PAIR: list[Pair] = []


def _garbage_pair() -> Pair:
    # One pair for all examples: building TLS contexts per example would dominate the run time.
    if not _GARBAGE_PAIR:
        _GARBAGE_PAIR.append(Pair())
    return _GARBAGE_PAIR[0]


def test_comp_lzo_no_framing_adds_and_strips_the_stub_byte() -> None:
    pair = Pair(comp_lzo_stub=True, timers=Timers(ping=1, ping_restart=60))
    _connected(pair)
    up = pair.client_sends(b"framed")
    assert up is not None
    assert pair.to_server(up) == TO_TUN
    assert pair.to_server_tun[-1].endswith(b"framed")
    assert pair.to_server_tun[-1][0] == 0x45  # the 0xFA byte is gone: an IP packet again
    pair.run(5)  # pings are framed too and still recognised
    assert pair.client.session.closed is None and pair.to_server_tun[-1].endswith(b"framed")


def test_comp_lzo_mismatch_drops_instead_of_forwarding_garbage() -> None:
    pair = Pair(comp_lzo_stub=True)
    _connected(pair)
    pair.server.sessions[0].comp = None  # the server forgot `comp-lzo no`
    down = pair.server_sends(b"unframed")
    assert down is not None
    assert pair.to_client(down) == DROPPED


def test_client_restarting_on_the_same_address_replaces_its_old_session_at_once() -> None:
    pair = Pair()
    _connected(pair)
    old_session = pair.server.sessions[0]
    old_vip = pair.client_vip
    # A new client process on the same address and port (its old one died silently).
    pair.client = Client(pair.client.settings, [SERVER_ADDR], pair.now, reconnect=False)
    pair.client_events.clear()
    pair.run(3)
    assert any(isinstance(e, DataChannelReady) for e in pair.client_events), pair.client_events
    assert old_session.closed is not None and "restarted" in old_session.closed.reason
    assert pair.server.sessions == [s for s in pair.server.sessions if s is not old_session]
    assert len(pair.server.sessions) == 1
    assert pair.client_vip == old_vip  # the same CN gets its address back
    up = pair.client_sends(b"after restart")
    assert up is not None and pair.to_server(up) == TO_TUN


def test_a_second_connection_with_the_same_cn_replaces_the_first() -> None:
    pair = Pair()
    _connected(pair)
    first = pair.server.sessions[0]
    other_addr = ("192.0.2.11", 40001)
    second = Client(pair.client.settings, [SERVER_ADDR], pair.now, reconnect=False)
    for _ in range(40):  # drive the second client by hand from another address
        for datagram, _addr in second.datagrams_to_send(pair.now):
            pair.to_server_from(datagram, other_addr)
        for datagram, addr in pair.server.datagrams_to_send(pair.now):
            if addr == other_addr:
                pair.deliver_to(second, datagram)
        pair.now += 0.05
    assert second.session.send_key is not None
    assert first.closed is not None and "new connection with CN" in first.closed.reason
    assert [s.remote_addr for s in pair.server.sessions] == [other_addr]


def test_ipv6_inside_the_tunnel_is_pushed_routed_and_source_checked() -> None:
    pair = Pair(ipv6=True)
    _connected(pair)
    pushed = pair.client.session.pushed
    assert pushed is not None and pushed.ifconfig_ipv6 is not None
    client6 = ipaddress.IPv6Address(pushed.ifconfig_ipv6[0].split("/")[0])
    assert pushed.ifconfig_ipv6 == (f"{client6}/64", str(SERVER_VIP6))
    # client -> server
    buf_up = pair.sealed_by_client(ip6_packet(client6, SERVER_VIP6, b"six up"))
    assert pair.to_server(buf_up) == TO_TUN
    assert pair.to_server_tun[-1].endswith(b"six up")
    # server -> client, routed by the IPv6 destination
    down = pair.sealed_by_server(ip6_packet(SERVER_VIP6, client6, b"six down"))
    assert down is not None and pair.to_client(down) == TO_TUN
    assert pair.to_client_tun[-1].endswith(b"six down")
    # a client may not send from an address it was not given
    spoofed = pair.sealed_by_client(
        ip6_packet(ipaddress.IPv6Address("fd00:8::dead"), SERVER_VIP6, b"x")
    )
    assert pair.to_server(spoofed) == DROPPED


def test_a_replaced_key_with_unacked_control_packets_does_not_block_later_rekeys() -> None:
    pair = Pair(timers=Timers(ping=2, ping_restart=100, reneg_sec=6, hand_window=10))
    pair.run(3)  # connected, well before the first rekey
    session = pair.client.session
    assert session.send_key is not None
    old = session.primary
    assert old is not None and old.key_id == 0
    # From now on the server never sees a control packet of key 0 again, so a message sent
    # on it stays unACKed after key 1 takes over.
    send = pair.link.send

    def drop_key0_control(datagram: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        if dst == SERVER_ADDR and datagram[0] & 7 == 0 and datagram[0] >> 3 not in (6, 9):
            return
        send(datagram, src, dst)

    pair.link.send = drop_key0_control  # type: ignore[method-assign]
    old.send_message("INFO,never acknowledged")
    pair.run(40, step=0.25)
    assert not old.reliable.all_acked
    assert old not in session.keys  # reaped after hand-window
    key = session.send_key
    assert key is not None and key.key_id >= 3, (key, [(k.key_id, k.phase) for k in session.keys])


def _server_renegotiates(pair: Pair) -> None:
    """The server starts a soft reset and the handshake completes, carrying no data."""
    session = pair.server.sessions[0]
    assert session.renegotiate(pair.now)
    pair.server.touch(session)
    pair.run(2)
    assert pair.client.session.renegotiations == 1 or pair.client.session.data_keys[1] is not None


def test_client_keeps_the_old_send_key_until_the_server_sends_on_the_new_one() -> None:
    """A stock server derives a renegotiated key only once the client's ACK of its KM2 arrived
    (that ACK is never retransmitted): the client keeps sending on the current key, still valid
    there as the lame duck, until the server's first packet on the new key."""
    pair = Pair()
    _connected(pair)
    _server_renegotiates(pair)
    up = pair.client_sends(b"before the server used key 1")
    assert up is not None and up[0] & 7 == 0
    down = pair.server_sends(b"on key 1")
    assert down is not None and down[0] & 7 == 1
    assert pair.to_client(down) == TO_TUN
    up = pair.client_sends(b"after")
    assert up is not None and up[0] & 7 == 1
    assert pair.to_server(up) == TO_TUN


def test_client_switches_after_the_grace_when_the_server_sends_nothing() -> None:
    from tunnel.protocol.session import SEND_SWITCH_GRACE

    pair = Pair()
    _connected(pair)
    _server_renegotiates(pair)
    pair.run(SEND_SWITCH_GRACE + 1)
    up = pair.client_sends(b"idle server")
    assert up is not None and up[0] & 7 == 1
    assert pair.to_server(up) == TO_TUN
