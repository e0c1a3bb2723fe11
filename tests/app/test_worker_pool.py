"""The supervisor's shared pool of a multi-worker server, and the merged status (no root)."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from core import PoolStats
from tunnel.app.status import ArenaCounters, ClientRow, StatusSnapshot, render_status
from tunnel.app.worker_ipc import merge_snapshots, snapshot_from_json, snapshot_to_json
from tunnel.app.workers import SharedPool
from tunnel.io.driver import DriverStats
from tunnel.protocol.server import AddressPool
from tunnel.protocol.traffic import Traffic

LOG = logging.getLogger("test")


def shared(size: int = 10, max_clients: int = 100, duplicate_cn: bool = False,
           ) -> tuple[SharedPool, list[tuple[int, str]]]:
    kills: list[tuple[int, str]] = []
    pool = AddressPool(ipaddress.IPv4Address("10.8.0.2"),
                       ipaddress.IPv4Address("10.8.0.2") + (size - 1))
    return SharedPool({4: pool}, max_clients, duplicate_cn, None, LOG,
                      lambda worker, cn: kills.append((worker, cn))), kills


def test_no_address_twice_across_workers_and_release_by_owner_only() -> None:
    pool, _ = shared(size=4)
    got = [pool.alloc(w, 4, f"cn{i}") for i, w in enumerate((0, 1, 0, 1))]
    assert len(set(got)) == 4 and None not in got
    assert pool.alloc(0, 4, "cn9") is None  # the pool is empty for everyone
    a0 = got[0]
    assert a0 is not None
    pool.release(1, 4, a0)  # not worker 1's: ignored
    assert pool.alloc(1, 4, "cn8") is None
    pool.release(0, 4, a0)
    assert pool.alloc(1, 4, "cn8") == a0


def test_returning_cn_gets_its_address_on_another_worker() -> None:
    pool, _ = shared(duplicate_cn=True)
    first = pool.alloc(0, 4, "alice")
    assert first is not None
    pool.release(0, 4, first)
    pool.alloc(0, 4, "bob")
    assert pool.alloc(1, 4, "alice") == first


def test_without_duplicate_cn_a_newer_connection_on_another_worker_wins() -> None:
    pool, kills = shared()
    first = pool.alloc(0, 4, "alice")
    second = pool.alloc(1, 4, "alice")
    assert kills == [(0, "alice")] and second == first
    assert first is not None
    pool.release(0, 4, first)  # the old session's late release: the address stays taken
    assert pool.held[4][int(ipaddress.ip_address(first))][0] == 1
    assert pool.clients() == 1


def test_max_clients_counts_all_workers() -> None:
    pool, _ = shared(max_clients=2, duplicate_cn=True)
    assert pool.alloc(0, 4, "a") and pool.alloc(1, 4, "b")
    assert pool.alloc(0, 4, "c") is None


def test_a_dead_workers_addresses_and_routes_are_freed() -> None:
    pool, _ = shared(size=2)
    a = pool.alloc(0, 4, "a")
    pool.alloc(1, 4, "b")
    pool.route(0, "10.8.0.2/32", True)
    pool.route(1, "10.9.0.0/24", True)
    pool.forget(0)
    assert pool.routes == {"10.9.0.0/24": 1}
    assert pool.alloc(1, 4, "c") == a


def test_route_removal_by_a_worker_that_no_longer_owns_it_is_ignored() -> None:
    pool, _ = shared()
    pool.route(0, "10.8.0.5/32", True)
    pool.route(1, "10.8.0.5/32", True)  # taken over (a CN moved to worker 1)
    pool.route(0, "10.8.0.5/32", False)
    assert pool.routes == {"10.8.0.5/32": 1}


def _snapshot(worker: int, clients: int) -> StatusSnapshot:
    rows = [ClientRow(f"c{worker}-{i}", f"192.0.2.{worker}:{1000 + i}", f"10.8.{worker}.{i}",
                      # worker w of 2 numbers its clients w, w + 2, ... (unique across workers)
                      10, 20, 1000.0 + i, i * 2 + worker, i * 2 + worker, "AES-256-GCM",
                      1001.0)
            for i in range(clients)]
    return StatusSnapshot("title", 1002.0, Traffic(1, 2, 3, 4, 5, 6), PoolStats(8, 1, 2, 3, 4, 0),
                          ArenaCounters(1, 2, 3, 0), DriverStats(udp_rx=5, tun_tx=7), rows,
                          {"replay": worker})


def test_merged_status_lists_every_workers_clients_with_unique_ids() -> None:
    parts = [snapshot_from_json(snapshot_to_json(_snapshot(w, 2), w)) for w in range(2)]
    merged = merge_snapshots("t", 2000.0, parts)
    assert merged.clients is not None and len(merged.clients) == 4
    assert len({row.client_id for row in merged.clients}) == 4
    # kept as the workers gave them: the id `status` lists is the one client-kill finds
    assert sorted(row.client_id for row in merged.clients) == [0, 1, 2, 3]
    assert merged.link.udp_rx == 10 and merged.traffic.link_rx == 2
    assert merged.drops == {"replay": 1}
    text = render_status(merged, 2)
    assert sum(line.startswith("CLIENT_LIST,") for line in text.splitlines()) == 4


def test_snapshot_json_rejects_garbage() -> None:
    with pytest.raises((KeyError, ValueError, TypeError)):
        snapshot_from_json({"title": "x"})
