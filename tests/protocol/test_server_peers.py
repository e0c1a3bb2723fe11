"""The server's public view of its clients: events that name the client (peer_id), the
caller's settings left alone, the source check as stock (link-local IPv6 dropped quietly) and
duplicate-cn addresses as stock hands them out. Counters: test_traffic.py."""

from __future__ import annotations

import dataclasses
import ipaddress

from tests.protocol.harness import (
    CLIENT_ADDR,
    SERVER_VIP,
    Pair,
    ip6_packet,
    ip_packet,
)
from tunnel.protocol.client import Client
from tunnel.protocol.drops import BAD_SOURCE
from tunnel.protocol.events import (
    DataChannelReady,
    HandshakeComplete,
    PacketDropped,
    SessionClosed,
)
from tunnel.protocol.verdicts import DROPPED


def _vip(client: Client) -> ipaddress.IPv4Address:
    pushed = client.session.pushed
    assert pushed is not None and pushed.ifconfig is not None
    return ipaddress.IPv4Address(pushed.ifconfig[0])


def test_events_carry_the_peer_id_of_their_client() -> None:
    pair = Pair()
    pair.connect()
    [session] = pair.server.sessions
    entry = pair.server.peer(session.peer_id)
    assert entry is not None and entry.session is session and entry.address == CLIENT_ADDR
    assert pair.server.peer_at(CLIENT_ADDR) is entry and entry.vip == pair.client_vip
    about = [e for e in pair.server_events if isinstance(e, (HandshakeComplete,
                                                               DataChannelReady))]
    assert about and all(e.peer_id == session.peer_id for e in about)
    ready = next(e for e in pair.server_events if isinstance(e, DataChannelReady))
    assert ready.data_peer_id == session.peer_id  # a 2.6 client: P_DATA_V2 with its id
    pair.server.kill(session, None, "test", pair.now)
    pair.flush()
    closed = [e for e in pair.server_events if isinstance(e, SessionClosed)]
    assert [(e.peer_id, e.address) for e in closed] == [(session.peer_id, CLIENT_ADDR)]
    assert pair.server.peer(session.peer_id) is None  # gone from the table with it
    # The client side has no peer table: its events name nobody.
    assert all(getattr(e, "peer_id", None) is None for e in pair.client_events)


def _fields(settings: object) -> dict[str, object]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}  # type: ignore[arg-type]


def test_the_callers_settings_are_not_changed() -> None:
    pair = Pair(ipv6=True)
    server, session = _fields(pair.server.settings), _fields(pair.server.settings.session)
    pair.connect()
    assert pair.client_vip == ipaddress.IPv4Address("10.8.0.2")  # the server's push list ran
    for before, settings in ((server, pair.server.settings),
                             (session, pair.server.settings.session)):
        after = _fields(settings)
        assert after.keys() == before.keys()
        assert all(after[name] is before[name] for name in before), [
            name for name in before if after[name] is not before[name]]


def test_link_local_ipv6_is_dropped_quietly_as_stock_other_sources_are_counted() -> None:
    pair = Pair(ipv6=True)
    pair.connect()
    pair.flush()
    pair.server_events.clear()
    # What a client's kernel sends as its TUN comes up: router solicitation from fe80::.
    solicit = ip6_packet(ipaddress.IPv6Address("fe80::1234"), ipaddress.IPv6Address("ff02::2"),
                         b"rs")
    assert pair.to_server(pair.sealed_by_client(solicit)) == DROPPED
    assert pair.server.drops.counts[BAD_SOURCE] == 0
    unspecified = ip6_packet(ipaddress.IPv6Address("::"), ipaddress.IPv6Address("ff02::16"),
                             b"mld")
    assert pair.to_server(pair.sealed_by_client(unspecified)) == DROPPED
    spoofed = ip_packet(SERVER_VIP, SERVER_VIP, b"not mine")
    assert pair.to_server(pair.sealed_by_client(spoofed)) == DROPPED
    assert pair.server.drops.counts[BAD_SOURCE] == 2  # stock logs these two
    pair.flush()
    reported = [e for e in pair.server_events if isinstance(e, PacketDropped)]
    assert [e.cause for e in reported] == [BAD_SOURCE, BAD_SOURCE]


def test_duplicate_cn_clients_each_get_the_lowest_free_address() -> None:
    pair = Pair(duplicate_cn=True)  # every client uses the test PKI's one certificate
    pair.connect()
    second = pair.connect_another(("192.0.2.11", 40001))
    third = pair.connect_another(("192.0.2.12", 40002))
    assert (pair.client_vip, _vip(second), _vip(third)) == tuple(
        ipaddress.IPv4Address(f"10.8.0.{i}") for i in (2, 3, 4))
    # The second leaves; a newcomer with the same name gets the lowest free one (stock), and
    # the one before (.2) is never handed out twice.
    entry = pair.server.peer_at(("192.0.2.11", 40001))
    assert entry is not None
    pair.server.kill(entry.session, None, "test", pair.now)
    pair.flush()
    fourth = pair.connect_another(("192.0.2.13", 40003))
    assert _vip(fourth) == ipaddress.IPv4Address("10.8.0.3")
    assert len(pair.server.sessions) == 3


def test_without_duplicate_cn_a_new_connection_replaces_the_old_one() -> None:
    pair = Pair()
    pair.connect()
    [first] = pair.server.sessions
    second = pair.connect_another(("192.0.2.11", 40001))
    [only] = pair.server.sessions
    assert only is not first and only.remote_addr == ("192.0.2.11", 40001)
    assert _vip(second) == ipaddress.IPv4Address("10.8.0.2")  # the name's own address again
    entry = pair.server.peer(only.peer_id)
    assert entry is not None and pair.server.table.named(entry.common_name or "") is entry
