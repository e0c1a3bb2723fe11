"""iroute lookups: longest prefix over the prefix lengths present, one dict probe per length."""

from __future__ import annotations

import time
from ipaddress import IPv4Address as V4
from ipaddress import IPv4Network as Net4

from tunnel.protocol.iroutes import IrouteTable


def _ip(text: str) -> int:
    return int(V4(text))


def test_longest_prefix_wins_and_levels_come_and_go() -> None:
    table: IrouteTable[str] = IrouteTable()
    assert not table and table.lookup(_ip("10.0.0.1")) is None
    table.add(Net4("10.0.0.0/8"), "wide")
    table.add(Net4("10.1.0.0/16"), "mid")
    table.add(Net4("10.1.2.0/24"), "narrow")
    assert table.lookup(_ip("10.1.2.3")) == "narrow"
    assert table.lookup(_ip("10.1.9.9")) == "mid"
    assert table.lookup(_ip("10.9.9.9")) == "wide"
    assert table.lookup(_ip("11.0.0.1")) is None
    table.remove(Net4("10.1.2.0/24"), "narrow")
    assert table.lookup(_ip("10.1.2.3")) == "mid"
    table.remove(Net4("10.1.0.0/16"), "mid")
    table.remove(Net4("10.0.0.0/8"), "wide")
    assert not table and len(table) == 0 and table.lookup(_ip("10.1.2.3")) is None


def test_the_newest_claimant_takes_a_shared_network_as_stock() -> None:
    # Stock's multi_learn_addr replaces the owner of an existing route ("update") and frees the
    # old route; iroutes are learned only at connect, so nobody gets it back when the owner goes.
    table: IrouteTable[str] = IrouteTable()
    net = Net4("192.168.5.0/24")
    table.add(net, "first")
    table.add(net, "second")
    assert table.lookup(_ip("192.168.5.1")) == "second" and len(table) == 1
    table.add(net, "second")  # again: still one network
    assert len(table) == 1
    table.remove(net, "first")  # no longer the owner: nothing changes
    assert table.lookup(_ip("192.168.5.1")) == "second" and len(table) == 1
    table.remove(net, "nobody")
    assert table.lookup(_ip("192.168.5.1")) == "second"
    table.remove(net, "second")
    assert table.lookup(_ip("192.168.5.1")) is None and not table and len(table) == 0
    table.remove(net, "second")  # gone already
    assert not table


def test_a_lookup_does_not_walk_the_routes() -> None:
    def cost(routes: int) -> float:
        table: IrouteTable[int] = IrouteTable()
        for i in range(routes):
            table.add(Net4(f"172.{16 + i // 256 % 16}.{i % 256}.0/24"), i)
        began = time.perf_counter()
        for _ in range(20000):
            table.lookup(_ip("192.0.2.1"))  # a miss: the worst case of a walk
        return time.perf_counter() - began

    small, large = cost(1), cost(4000)
    # A walk over 4000 routes per lookup is ~1000x; a generous bound for a loaded machine.
    assert large < 3 * small + 0.05, (small, large)


def test_a_server_routes_a_shared_iroute_to_the_newer_client_until_it_leaves() -> None:
    """Two connected clients announce 192.168.50.0/24 (ccd / client-connect iroute): packets
    from the TUN for it go to the one that connected last; when it goes, to nobody (stock:
    the older one's route was replaced, and iroutes are learned only at connect)."""
    from tests.protocol.harness import CLIENT_ADDR, SERVER_VIP, Pair, ip_packet
    from tunnel.protocol.clientconfig import ClientConfig

    net = Net4("192.168.50.0/24")
    pair = Pair(duplicate_cn=True)
    pair.server.settings.client_config = lambda _session: ClientConfig(iroutes=(net,))
    pair.connect()
    other_addr = ("192.0.2.77", 41000)
    pair.connect_another(other_addr)
    inside = ip_packet(SERVER_VIP, V4("192.168.50.9"), b"to the network behind")

    def routed_to() -> tuple[str, int] | None:
        buf = pair.pool.acquire()
        buf.append(inside)
        try:
            return pair.server.encrypt(buf, pair.now)
        finally:
            pair.pool.release(buf)

    assert routed_to() == other_addr
    newer = next(s for s in pair.server.sessions if s.remote_addr == other_addr)
    pair.server.kill(newer, None, "test", pair.now)
    assert [s.remote_addr for s in pair.server.sessions] == [CLIENT_ADDR]
    assert routed_to() is None
