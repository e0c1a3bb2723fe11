"""The app's registry of connected clients, kept from the server's events alone: one lookup per
event by the event's peer_id, and a peer that reads its address, virtual address and counters
live from the server's entry (a float needs no event)."""

from __future__ import annotations

from tests.protocol.harness import CLIENT_ADDR, Pair
from tunnel.app.peers import Peer, PeerRegistry
from tunnel.protocol.verdicts import TO_TUN

OTHER = ("192.0.2.11", 40001)


def _registry(pair: Pair) -> tuple[PeerRegistry, list[tuple[str, int]]]:
    registry = PeerRegistry(pair.server, clock=lambda: 1234.0)
    told: list[tuple[str, int]] = []

    def listener(what: str, peer: Peer) -> None:
        told.append((what, peer.client_id))

    registry.listeners.append(listener)
    return registry, told


def _feed(pair: Pair, registry: PeerRegistry) -> None:
    pair.flush()
    for event in pair.server_events:
        registry.on_event(event)
    pair.server_events.clear()


def test_a_client_arrives_floats_and_leaves_by_its_events() -> None:
    pair = Pair()
    registry, told = _registry(pair)
    pair.connect()
    _feed(pair, registry)
    [peer] = registry.in_order()
    assert told == [("arrived", 0)]
    assert (peer.common_name, peer.client_id, peer.connected_since) == ("client", 0, 1234.0)
    assert peer.address == CLIENT_ADDR and peer.virtual_address == str(pair.client_vip)
    assert registry.by_peer_id(peer.peer_id) is peer and registry.by_client_id(0) is peer
    assert registry.by_common_name("client") is peer and registry.named("client") == [peer]
    assert peer.prefix == f"client/{CLIENT_ADDR[0]}:{CLIENT_ADDR[1]}"
    # A float is the server's business: the peer reads where the client is now.
    sealed = pair.client_sends(b"from elsewhere")
    assert sealed is not None and pair.to_server_from(sealed, OTHER) == TO_TUN
    assert peer.address == OTHER and peer.traffic.link_rx_packets > 0
    # It leaves with its SessionClosed; what it had counted stays readable.
    counted = peer.traffic.link_rx
    pair.server.kill(peer.session, None, "test", pair.now)
    _feed(pair, registry)
    assert told == [("arrived", 0), ("left", 0)] and registry.peers == {}
    assert registry.by_client_id(0) is None and registry.by_common_name("client") is None
    assert peer.traffic.link_rx == counted and peer.virtual_address == str(pair.client_vip)


def test_clients_with_one_name_are_told_apart_by_peer_id() -> None:
    pair = Pair(duplicate_cn=True)
    registry, told = _registry(pair)
    pair.connect()
    pair.connect_another(OTHER)
    _feed(pair, registry)
    first, second = registry.in_order()
    assert (first.address, second.address) == (CLIENT_ADDR, OTHER)
    assert registry.by_common_name("client") is None  # ambiguous
    assert registry.named("client") == [first, second]
    pair.server.kill(second.session, None, "test", pair.now)
    _feed(pair, registry)
    assert registry.in_order() == [first] and told[-1] == ("left", second.client_id)
    assert registry.by_common_name("client") is first


def test_a_session_that_never_became_a_peer_leaves_nothing() -> None:
    pair = Pair()
    registry, told = _registry(pair)
    for _ in range(10):  # reset, cookie, echo: the server keeps a session, no handshake yet
        pair.flush()
        pair.deliver()
        if pair.server.sessions:
            break
    _feed(pair, registry)
    [session] = pair.server.sessions
    assert session.peer_common_name is None and registry.peers == {}
    pair.server.kill(session, None, "test", pair.now)
    _feed(pair, registry)
    assert registry.peers == {} and told == []
