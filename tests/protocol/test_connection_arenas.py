"""One GcArena per connection per event-loop iteration on the server (protocol/memory.py):
taken for the connections an iteration touched, freed at its end; a buffer `detach`ed (a
datagram kept on EAGAIN) survives the iteration; the counters say so."""

from __future__ import annotations

import ipaddress

import pytest

from core import Buffer, BufferPool, GcArena, PoolError
from tests.protocol.harness import SERVER_ADDR, Pair, ip_packet
from tests.protocol.test_client_to_client import OTHER_ADDR, _two_clients
from tunnel.protocol.client import Client
from tunnel.protocol.memory import ConnectionMemory, IterationArenas
from tunnel.protocol.session import Session
from tunnel.protocol.verdicts import CONSUMED


def _forwarding_pair() -> tuple[Pair, Client, bytes]:
    pair, second = _two_clients(True)
    pair.server.iteration.pool = pair.pool
    assert second.session.pushed is not None and second.session.pushed.ifconfig is not None
    vip = ipaddress.IPv4Address(second.session.pushed.ifconfig[0])
    sealed = pair.sealed_by_client(ip_packet(pair.client_vip, vip, b"to the other one"))
    pair.server.end_iteration()  # what the handshake touched: a clean start
    return pair, second, sealed


def _session_at(pair: Pair, addr: tuple[str, int]) -> Session:
    entry = pair.server.peer_at(addr)
    assert entry is not None
    return entry.session


def test_an_iteration_frees_the_arenas_of_the_connections_it_touched() -> None:
    pair, second, sealed = _forwarding_pair()
    other = _session_at(pair, OTHER_ADDR)
    in_use = pair.pool.stats.in_use
    iterations = other.memory.iterations
    assert pair.to_server(sealed) == CONSUMED
    # The forwarded datagram lives in a pool buffer of the *receiving* connection's arena.
    assert other.memory.arena.live_entries == 1
    assert pair.pool.stats.in_use == in_use + 1
    (buf, addr, arena), = pair.server.iteration.to_send()
    assert addr == OTHER_ADDR and arena is other.memory.arena
    delivered = bytes(buf.data)
    pair.server.end_iteration()
    assert other.memory.arena.live_entries == 0
    assert pair.pool.stats.in_use == in_use  # everything freed
    assert other.memory.iterations == iterations + 1
    assert other.memory.arena.entries_freed >= 1 and other.memory.buffers_taken >= 1
    with pytest.raises(PoolError):
        buf.data  # noqa: B018  (a freed buffer refuses every use)
    # and it was the real thing: the other client opens it
    into = Buffer(4096)
    into.reset(256)
    into.append(delivered)
    second.receive(into, SERVER_ADDR, pair.now)
    assert bytes(into.data).endswith(b"to the other one")


def test_a_detached_buffer_survives_the_iteration() -> None:
    pair, _second, sealed = _forwarding_pair()
    other = _session_at(pair, OTHER_ADDR)
    in_use = pair.pool.stats.in_use
    assert pair.to_server(sealed) == CONSUMED
    (buf, _addr, arena), = pair.server.iteration.to_send()
    kept = arena.detach(buf)  # e.g. the kernel said EAGAIN: the driver keeps it
    wire = bytes(kept.data)
    pair.server.end_iteration()
    assert bytes(kept.data) == wire  # still valid after the iteration's free
    assert other.memory.arena.detached == 1
    assert pair.pool.stats.in_use == in_use + 1  # owned by its new owner, not leaked
    pair.pool.release(kept)
    assert pair.pool.stats.in_use == in_use


def test_untouched_connections_are_not_walked() -> None:
    pair, _second, _sealed = _forwarding_pair()
    (first,) = [s for s in pair.server.sessions if s.remote_addr != OTHER_ADDR]
    before = first.memory.iterations
    pair.server.end_iteration()  # an iteration that touched nobody
    assert first.memory.iterations == before
    assert not pair.server.iteration.touched


def test_a_datagram_left_unsent_is_freed_and_counted() -> None:
    pair, _second, sealed = _forwarding_pair()
    in_use = pair.pool.stats.in_use
    pair.to_server(sealed)
    pair.server.end_iteration()  # nobody sent it
    assert pair.server.iteration.unsent == 1
    assert pair.pool.stats.in_use == in_use


def test_an_exhausted_pool_drops_the_forwarded_packet_and_counts_it() -> None:
    pair, _second, sealed = _forwarding_pair()
    tiny = BufferPool(pair.pool.frame, 1)
    hog = tiny.acquire()
    pair.server.iteration.pool = tiny
    assert pair.to_server(sealed) == CONSUMED
    assert pair.server.iteration.exhausted == 1
    assert not pair.server.iteration.to_send()
    tiny.release(hog)


def test_iteration_arenas_without_a_pool_take_nothing() -> None:
    iteration = IterationArenas()
    memory = ConnectionMemory()
    assert iteration.take(memory) is None
    iteration.end()
    assert memory.iterations == 0 and isinstance(memory.arena, GcArena)
