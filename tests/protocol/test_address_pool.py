"""The server's address pool: hand-out order, a returning CN's address, and its cost at scale.

`scripts/loadgen` found every connecting client of a /16 pool paying a walk over all 65534
free addresses (a membership test on the queue) when its CN had connected before: ~10 ms per
handshake, most of the server's CPU while clients connected. These pin the order OpenVPN's
pool.c gives and that asking stays cheap however large the pool.
"""

from __future__ import annotations

import time
from ipaddress import IPv4Address as V4

from tunnel.protocol.addresspool import AddressPool


def test_order_returning_cn_and_release_to_the_back() -> None:
    pool = AddressPool(V4("10.8.0.2"), V4("10.8.0.5"))
    a = pool.allocate("alice")
    b = pool.allocate("bob")
    assert (a, b) == (V4("10.8.0.2"), V4("10.8.0.3"))
    pool.release(a)
    pool.release(b)
    assert pool.allocate("bob") == b  # its previous address, taken from the middle
    assert pool.allocate("carol") == V4("10.8.0.4")  # never-used addresses first
    assert pool.allocate("dave") == V4("10.8.0.5")
    assert pool.allocate("erin") == a  # then the released ones, oldest release first
    assert pool.allocate("frank") is None  # b's stale queue entry is not handed out twice
    pool.release(b)
    assert pool.allocate("grace") == b
    assert pool.allocate("heidi") is None


def test_an_address_taken_and_released_again_keeps_one_place() -> None:
    pool = AddressPool(V4("10.8.0.2"), V4("10.8.0.4"))
    x = pool.allocate("x")
    pool.release(x)
    for _ in range(3):  # taken from the middle and released, again and again
        assert pool.allocate("x") == x
        pool.release(x)
    got = [pool.allocate(None) for _ in range(4)]
    assert got == [V4("10.8.0.3"), V4("10.8.0.4"), x, None]


def test_reserve_moves_to_the_back_and_refuses_a_taken_address() -> None:
    pool = AddressPool(V4("10.8.0.2"), V4("10.8.0.4"))
    assert pool.reserve("alice", V4("10.8.0.2"))
    assert not pool.reserve("bob", V4("10.8.0.9"))  # not in the pool
    assert pool.allocate("carol") == V4("10.8.0.3")
    assert pool.allocate("alice") == V4("10.8.0.2")
    assert not pool.reserve("dave", V4("10.8.0.2"))  # in use


def test_a_returning_cn_costs_no_walk_over_a_large_pool() -> None:
    pool = AddressPool(V4("10.80.0.2"), V4("10.80.255.254"))  # a /16: 65533 addresses
    first = pool.allocate("same-cn")
    assert first is not None
    start = time.perf_counter()
    for _ in range(2000):  # duplicate-cn: the CN's previous address is always in use
        assert pool.allocate("same-cn") is not None
    elapsed = time.perf_counter() - start
    # A walk over the free queue per call took ~10 ms each (20 s); a set lookup takes ~1 us.
    assert elapsed < 2.0, f"{elapsed:.2f} s for 2000 allocations"


def test_peek_says_what_allocate_would_hand_out() -> None:
    pool = AddressPool(V4("10.8.0.2"), V4("10.8.0.4"))
    a = pool.allocate("alice")
    pool.release(a)
    assert pool.peek("alice") == a  # the returning CN's own
    assert pool.allocate("alice") == a
    assert pool.peek(None) == V4("10.8.0.3")
    pool.release(a)
    assert [pool.allocate(None), pool.allocate(None)] == [V4("10.8.0.3"), V4("10.8.0.4")]
    assert pool.peek(None) == a  # past a's stale entry, to its entry at the back
    assert pool.allocate(None) == a
    assert pool.peek(None) is None


def test_duplicate_cn_takes_the_lowest_free_address_as_stock() -> None:
    # pool.c ifconfig_pool_find: with duplicate_cn "take first available IP address", so a
    # name's history does not decide (several clients share it) and each one gets its own.
    pool = AddressPool(V4("10.8.0.2"), V4("10.8.0.6"), duplicate_cn=True)
    got = [pool.allocate("shared") for _ in range(3)]
    assert got == [V4("10.8.0.2"), V4("10.8.0.3"), V4("10.8.0.4")]
    pool.release(got[2])
    pool.release(got[0])
    assert pool.peek("shared") == V4("10.8.0.2")  # the lowest, not the last released
    assert pool.allocate("shared") == V4("10.8.0.2")
    assert pool.allocate("other") == V4("10.8.0.4")
    assert [pool.allocate(None) for _ in range(3)] == [V4("10.8.0.5"), V4("10.8.0.6"), None]
    assert pool.assignments() == {"shared": V4("10.8.0.2"), "other": V4("10.8.0.4")}


def test_duplicate_cn_pool_keeps_no_queue_however_long_it_runs() -> None:
    pool = AddressPool(V4("10.8.0.2"), V4("10.8.0.9"), duplicate_cn=True)
    for _ in range(5000):  # churn: connect, disconnect
        address = pool.allocate("shared")
        assert address == V4("10.8.0.2")
        pool.release(address)
    assert len(pool._lowest) <= pool.size + 1 and not pool._queue and not pool._stale
    assert pool.reserve("persisted", V4("10.8.0.5"))  # ifconfig-pool-persist still works
    assert [pool.allocate(None) for _ in range(4)] == [V4(f"10.8.0.{i}") for i in (2, 3, 4, 5)]
