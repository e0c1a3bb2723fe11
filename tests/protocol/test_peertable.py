"""The server's peer table: one add/remove keeps every map, the peer-ids and the address pools
consistent, whatever an entry was given in between."""

from __future__ import annotations

from ipaddress import IPv4Address as V4
from ipaddress import IPv4Network as Net4
from ipaddress import IPv6Address as V6

import pytest

from tests.protocol.harness import tls_settings
from tunnel.protocol.addresspool import AddressPool
from tunnel.protocol.errors import HandshakeError
from tunnel.protocol.peertable import PeerEntry, PeerTable
from tunnel.protocol.session import Session
from tunnel.protocol.settings import SessionSettings
from tunnel.runtime import session_settings

A = ("192.0.2.1", 1000)
B = ("192.0.2.2", 2000)


def _table(max_clients: int = 4, v6: bool = False) -> PeerTable:
    pool = AddressPool(V4("10.8.0.2"), V4("10.8.0.5"))
    pool6 = AddressPool(V6("fd00::1000"), V6("fd00::1003")) if v6 else None
    return PeerTable(max_clients, pool, pool6)


def _settings() -> SessionSettings:
    return session_settings(is_client=False, tls=tls_settings("server"))


def _add(table: PeerTable, addr: tuple[str, int], cn: str | None = None) -> PeerEntry:
    settings = _settings()
    entry = table.add(addr, lambda pid: Session(settings, remote_addr=addr, now=0.0, peer_id=pid))
    assert entry is not None
    entry.session.peer_common_name = cn
    return entry


def _empty(table: PeerTable) -> bool:
    return (not table.by_addr and not table.by_vip and not table.by_vip6 and not table.iroutes
            and table.by_id.count(None) == len(table.by_id))


def test_add_assign_remove_leaves_nothing_and_gives_everything_back() -> None:
    table = _table(v6=True)
    entry = _add(table, A, "alice")
    assert table.at(A) is entry and table.get(entry.peer_id) is entry and table.of(entry.session)
    vip = table.assign(entry, iroutes=(Net4("192.168.1.0/24"),))
    table.set_name(entry, "alice")
    assert vip == V4("10.8.0.2") and table.by_vip[int(vip)] is entry
    assert entry.vip6 == V6("fd00::1000") and table.by_vip6[entry.vip6.packed] is entry
    assert table.iroutes.lookup(int(V4("192.168.1.77"))) is entry
    assert table.named("alice") is entry and len(table) == 1
    table.remove(entry)
    assert _empty(table) and table.named("alice") is None and len(table) == 0
    assert table.of(entry.session) is None
    # The addresses are free again: the same CN gets them back.
    again = _add(table, B, "alice")
    assert table.assign(again) == vip and again.vip6 == V6("fd00::1000")
    table.remove(entry)  # a second remove of a gone entry changes nothing
    assert table.at(B) is again


def test_ifconfig_push_is_not_the_pools_and_is_refused_when_taken() -> None:
    table = _table()
    first = _add(table, A)
    pushed = V4("10.8.0.99")
    assert table.assign(first, ifconfig_push=pushed) == pushed
    second = _add(table, B)
    with pytest.raises(HandshakeError, match="in use"):
        table.assign(second, ifconfig_push=pushed)
    table.remove(first)
    table.remove(second)
    assert _empty(table)
    assert table.pool.peek() == V4("10.8.0.2")  # nothing pushed went into the pool
    assert table.pool.assignments() == {}


def test_peer_ids_are_reused_as_late_as_possible_and_bounded() -> None:
    table = _table(max_clients=2)
    first, second = _add(table, A), _add(table, B)
    assert (first.peer_id, second.peer_id) == (0, 1) and not table.has_room
    assert table.add(("192.0.2.3", 3), lambda pid: first.session) is None
    table.remove(first)
    third = _add(table, ("192.0.2.3", 3))
    assert third.peer_id == 0
    table.remove(second)
    table.remove(third)
    assert [_add(table, (f"192.0.2.{i}", i)).peer_id for i in (4, 5)] == [1, 0]  # FIFO


def test_a_failing_session_constructor_gives_its_peer_id_back() -> None:
    table = _table(max_clients=1)

    def broken(_pid: int) -> Session:
        raise ValueError("no")

    with pytest.raises(ValueError):
        table.add(A, broken)
    assert table.has_room and _empty(table)


def test_a_float_moves_the_address_key_only() -> None:
    table = _table()
    entry = _add(table, A)
    table.assign(entry)
    table.move(entry, B)
    assert table.at(A) is None and table.at(B) is entry and entry.address == B
    table.remove(entry)
    assert _empty(table)


def test_a_failed_ipv6_assignment_is_given_back_by_remove() -> None:
    table = PeerTable(4, AddressPool(V4("10.8.0.2"), V4("10.8.0.5")),
                      AddressPool(V6("fd00::1"), V6("fd00::1")))
    first, second = _add(table, A), _add(table, B)
    table.assign(first)
    with pytest.raises(HandshakeError, match="IPv6 pool"):
        table.assign(second)
    table.remove(second)
    table.remove(first)
    assert _empty(table)
    # both IPv4 addresses went back (never-used ones first), and the one IPv6 address
    assert table.pool.peek() == V4("10.8.0.4") and table.pool6 is not None
    assert table.pool6.peek() == V6("fd00::1")


def test_two_clients_with_one_iroute_the_newer_owns_it_and_the_older_leaving_keeps_it() -> None:
    table = _table()
    net = Net4("192.168.7.0/24")
    older, newer = _add(table, A, "older"), _add(table, B, "newer")
    table.assign(older, iroutes=(net,))
    table.assign(newer, iroutes=(net,))
    inside = int(V4("192.168.7.9"))
    assert table.iroutes.lookup(inside) is newer
    table.remove(older)
    assert table.iroutes.lookup(inside) is newer
    table.remove(newer)
    assert table.iroutes.lookup(inside) is None and _empty(table)
