"""Byte and datagram counters: per session for the whole connection (what the status file,
bytecount and metrics report per client), totals on the server and the client."""

from __future__ import annotations

from tests.protocol.harness import Pair
from tunnel.protocol.verdicts import DROPPED, TO_TUN


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
