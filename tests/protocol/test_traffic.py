"""Byte and datagram counters: per session for the whole connection (what the status file,
bytecount and metrics report per client), totals on the server and the client."""

from __future__ import annotations

import ipaddress

import pytest

from tests.protocol.harness import Pair, ip_packet
from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN


def test_byte_and_packet_counters_live_on_the_session() -> None:
    pair = Pair()
    before = pair.server.traffic.link_rx
    assert before == 0
    pair.connect()
    [session] = pair.server.sessions
    handshake = (session.traffic.link_rx, session.traffic.link_tx)
    assert handshake[0] > 0 and handshake[1] > 0
    assert session.traffic.link_rx_packets > 0 and session.traffic.link_tx_packets > 0
    up = pair.client_sends(b"u" * 100)
    assert up is not None and pair.to_server(up) == TO_TUN
    down = pair.server_sends(b"d" * 200)
    assert down is not None
    assert session.traffic.link_rx == handshake[0] + len(up)
    assert session.traffic.link_tx == handshake[1] + len(down)
    totals = pair.server.traffic
    assert totals.tun_tx == 20 + 100 and totals.tun_rx == 20 + 200
    assert totals.link_rx >= session.traffic.link_rx
    assert totals.link_tx >= session.traffic.link_tx
    # The client counts its totals the same way.
    client = pair.client.traffic
    assert client.tun_rx == 120 and client.link_tx >= len(up) and client.link_rx > 0
    # A packet claiming the client's peer-id from elsewhere is not the client's traffic.
    rx = session.traffic.link_rx
    assert pair.to_server_from(up, ("198.51.100.9", 9)) == DROPPED  # a replay, too
    assert session.traffic.link_rx == rx


@pytest.mark.parametrize("pooled", [True, False])
def test_a_client_to_client_packet_counts_for_the_receiver_and_in_the_totals(
        pooled: bool) -> None:
    pair = Pair(duplicate_cn=True)
    pair.server.settings.client_to_client = True
    pair.connect()
    other = pair.connect_another(("192.0.2.11", 40001))
    assert other.session.pushed is not None and other.session.pushed.ifconfig is not None
    other_vip = ipaddress.IPv4Address(other.session.pushed.ifconfig[0])
    if pooled:  # as the drivers run it: sealed in a pool buffer of the receiver's arena
        pair.server.iteration.pool = pair.pool
    receiver = pair.server.peer_at(("192.0.2.11", 40001))
    assert receiver is not None
    sealed = pair.sealed_by_client(ip_packet(pair.client_vip, other_vip, b"hello, other"))
    before, totals = receiver.session.traffic.link_tx, pair.server.traffic.link_tx
    packets = pair.server.traffic.link_tx_packets
    assert pair.to_server(sealed) == CONSUMED
    out = [(buf.data.tobytes(), addr) for buf, addr, _ in pair.server.iteration.to_send()]
    out += pair.server.datagrams_to_send(pair.now)
    [datagram] = [d for d, a in out if a == ("192.0.2.11", 40001)]
    assert receiver.session.traffic.link_tx == before + len(datagram)
    assert pair.server.traffic.link_tx == totals + len(datagram)
    assert pair.server.traffic.link_tx_packets == packets + 1
    pair.server.end_iteration()


def test_refused_data_packets_are_counted_for_their_client() -> None:
    pair = Pair()
    pair.connect()
    [session] = pair.server.sessions
    sealed = [pair.client_sends(b"p%d" % i) for i in range(3)]
    for datagram in sealed:
        assert datagram is not None and pair.to_server(datagram) == TO_TUN
    for datagram in sealed:  # replays
        assert datagram is not None and pair.to_server(datagram) == DROPPED
    for datagram in sealed[:2]:  # tampered
        assert datagram is not None
        assert pair.to_server(datagram[:-1] + bytes([datagram[-1] ^ 1])) == DROPPED
    assert (session.traffic.replay_drops, session.traffic.auth_drops) == (3, 2)
    # A renegotiation replaces the data keys (whose own counters go with them); the
    # client's counts stay.
    pair.client.session.renegotiate(pair.now)
    pair.run(5)
    assert session.renegotiations == 1
    assert (session.traffic.replay_drops, session.traffic.auth_drops) == (3, 2)
