"""Where a multi-worker server's new sessions go, without root: the supervisor's placement
(SharedPool.place: the least busy worker, ties in turn, bounded hand-offs), and the server's
side of it: a cookie issued by one worker's server is accepted by another's when they share
the key, and a proof placed elsewhere creates nothing."""

from __future__ import annotations

import ipaddress
import logging
import os
import tracemalloc

import pytest

from core import BufferPool
from tests.flood import _echo, _reset
from tests.protocol.harness import tls_settings
from tunnel.app.workers import HANDOFF_LIMIT, SharedPool
from tunnel.io.steering import SessionSteering
from tunnel.protocol.codec import parse_control
from tunnel.protocol.constants import Opcode
from tunnel.protocol.cookie import COOKIE_KEY_LEN
from tunnel.protocol.drops import AUTH_FAILED
from tunnel.protocol.server import AddressPool, Server, ServerSettings
from tunnel.runtime import Timers, make_frame, make_pool, session_settings

LOG = logging.getLogger("test")
CLIENT = ("198.51.100.7", 40000)


def shared() -> SharedPool:
    pool = AddressPool(ipaddress.IPv4Address("10.8.0.2"), ipaddress.IPv4Address("10.8.0.200"))
    return SharedPool({4: pool}, 100, True, None, LOG, lambda worker, cn: None)


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def test_new_sessions_go_to_the_least_busy_worker_ties_in_turn() -> None:
    pool = shared()
    owners = [pool.place(0, sid(n), [0, 1]) for n in range(1, 5)]
    assert sorted(owners) == [0, 0, 1, 1], owners  # whoever verified the cookies: 2 + 2
    assert owners[0] != owners[1] and owners[2] != owners[3]
    assert pool.per_worker == {0: 2, 1: 2}
    # A resent proof finds its pin: the same worker, not a second placement.
    assert pool.place(1, sid(1), [0, 1]) == owners[0]
    # Two sessions of worker 0 end: the next two go there.
    gone = [n for n, owner in zip(range(1, 5), owners, strict=True) if owner == 0]
    for n in gone:
        pool.pin(0, sid(n), False)
    assert pool.place(1, sid(10), [0, 1]) == 0
    assert pool.place(1, sid(11), [0, 1]) == 0
    assert pool.place(1, sid(12), [0, 1]) in (0, 1)
    assert sum(pool.per_worker.values()) == len(pool.pins) == 5


def test_placements_not_confirmed_are_bounded_and_a_dead_worker_frees_its_pins() -> None:
    pool = shared()
    for n in range(HANDOFF_LIMIT):
        assert pool.place(0, sid(n), [1]) == 1  # only worker 1 runs
    assert pool.place(0, sid(1000), [1]) is None  # worker 1 has not confirmed any yet
    pool.pin(1, sid(0), True)  # it made the first session
    pool.pin(1, sid(1), False)  # and refused the second: its pin is gone at once
    assert sid(1) not in pool.pins and pool.pins[sid(0)] == 1
    assert pool.place(0, sid(1000), [1]) == 1
    assert pool.place(0, sid(1001), [1]) == 1
    assert pool.place(0, sid(1002), [1]) is None
    pool.forget(1)
    assert pool.pins == {} and pool.placing == {} and pool.per_worker == {1: 0}
    assert pool.place(0, sid(5), []) is None  # nobody runs: refused, nothing pinned
    assert pool.pins == {}


@pytest.mark.root
def test_a_full_pinned_map_refuses_the_session_said_once_and_nothing_breaks(
        caplog: pytest.LogCaptureFixture) -> None:
    steering = SessionSteering.create(2, max_sessions=2)
    try:
        pool = shared()
        pool.sessions = steering
        assert pool.place(0, sid(1), [0, 1]) is not None
        assert pool.place(0, sid(2), [0, 1]) is not None
        with caplog.at_level(logging.WARNING, logger="test"):
            assert pool.place(0, sid(3), [0, 1]) is None
            assert pool.place(1, sid(4), [0, 1]) is None
        warnings = [r for r in caplog.records if "a new session refused" in r.getMessage()]
        assert len(warnings) == 1, caplog.records  # once, not per refused proof
        assert sorted(steering.pinned()) == [sid(1), sid(2)] and len(pool.pins) == 2
        pool.pin(pool.pins[sid(1)], sid(1), False)  # a session ends: room again
        assert pool.place(1, sid(4), [0, 1]) is not None
        assert sorted(steering.pinned()) == [sid(2), sid(4)]
    finally:
        steering.close()


def server(key: bytes, place: object = None) -> Server:
    settings = ServerSettings(
        session=session_settings(is_client=False, tls=tls_settings("server"),
                                 timers=Timers(ping=10, ping_restart=60, hand_window=60)),
        pool=AddressPool(ipaddress.IPv4Address("10.8.0.2"),
                         ipaddress.IPv4Address("10.8.0.200")),
        place_session=place,  # type: ignore[arg-type]
    )
    return Server(settings, 1000.0, cookie_key=key)


def send(endpoint: Server, pool: BufferPool, datagram: bytes) -> list[bytes]:
    buf = pool.acquire()
    try:
        buf.append(datagram)
        endpoint.receive(buf, CLIENT, 1000.0)
    finally:
        pool.release(buf)
    return [data for data, _addr in endpoint.datagrams_to_send(1000.0)]


def proof(answered_by: Server, pool: BufferPool, client_sid: bytes) -> bytes:
    answer = send(answered_by, pool, _reset(client_sid))
    assert len(answer) == 1 and answer[0][0] >> 3 == Opcode.P_CONTROL_HARD_RESET_SERVER_V2
    assert answered_by.half_open == 0  # the reset left nothing behind
    return _echo(client_sid, parse_control(answer[0]).session_id)


def test_a_cookie_issued_by_one_worker_is_accepted_by_another_with_the_shared_key() -> None:
    pool = make_pool(make_frame(), 8)
    key = os.urandom(COOKIE_KEY_LEN)
    worker_a, worker_b, stranger = server(key), server(key), server(os.urandom(COOKIE_KEY_LEN))
    client_sid = os.urandom(8)
    echo = proof(worker_a, pool, client_sid)
    send(stranger, pool, echo)
    assert stranger.half_open == 0  # another key: the cookie is not ours, nothing made
    send(worker_b, pool, echo)
    assert worker_b.half_open == 1 and worker_a.half_open == 0
    entry = worker_b.peer_at(CLIENT)
    assert entry is not None and bytes(entry.session.remote_sid or b"") == client_sid


def test_a_proof_placed_elsewhere_creates_nothing_and_the_hook_gets_it_as_it_arrived() -> None:
    pool = make_pool(make_frame(), 8)
    key = os.urandom(COOKIE_KEY_LEN)
    asked: list[tuple[bytes, tuple[str, int], bytes]] = []

    def elsewhere(client_sid: bytes, addr: tuple[str, int], raw: bytes) -> bool:
        asked.append((client_sid, addr, raw))
        return False

    verifier = server(key, elsewhere)
    client_sid = os.urandom(8)
    echo = proof(verifier, pool, client_sid)
    send(verifier, pool, _echo(client_sid, os.urandom(8)))  # a forged cookie: not asked
    assert asked == []
    send(verifier, pool, echo)
    assert asked == [(client_sid, CLIENT, echo)] and verifier.half_open == 0
    owner = server(key, lambda *_: True)  # the worker it was handed to makes it
    send(owner, pool, asked[0][2])
    assert owner.half_open == 1


def test_proof_shaped_input_that_fails_the_wrap_check_allocates_nothing_per_datagram() -> None:
    """With placement (workers) a P_CONTROL_V1 / P_ACK_V1 from an unknown source is kept as
    it arrived before the wrap opens it in place: copied into the server's one scratch
    block, so input nobody authenticated costs no allocation of its size. Measured with
    tracemalloc: 200 forged 1400-byte proofs (a wrong tls-auth HMAC, which is checked over
    the datagram in place) raise the peak by less than one of them (a bytes copy each: by
    1400+)."""
    from tests.protocol import wrap_vectors
    from tunnel.protocol.wrap import TlsAuthWrap, parse_static_key

    wrap = TlsAuthWrap(parse_static_key(wrap_vectors.TLS_AUTH_SHA1_KEY_FILE), 0)
    settings = ServerSettings(
        session=session_settings(is_client=False, tls=tls_settings("server"), control_wrap=wrap,
                                 timers=Timers(ping=10, ping_restart=60, hand_window=60)),
        pool=AddressPool(ipaddress.IPv4Address("10.8.0.2"),
                         ipaddress.IPv4Address("10.8.0.200")),
        place_session=lambda *_: True,
    )
    endpoint = Server(settings, 1000.0, cookie_key=os.urandom(COOKIE_KEY_LEN))
    pool = make_pool(make_frame(), 8)
    forged = [bytes([opcode << 3]) + os.urandom(1399)
              for opcode in (Opcode.P_CONTROL_V1, Opcode.P_ACK_V1)]

    def feed(count: int) -> None:
        for i in range(count):
            buf = pool.acquire()
            try:
                buf.append(forged[i & 1])
                endpoint.receive(buf, (CLIENT[0], 40000 + i), 1000.0)
            finally:
                pool.release(buf)

    feed(20)  # the drop log's first (rate-limited) lines and counters exist
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        feed(200)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert endpoint.drops.counts[AUTH_FAILED] == 220
    print(f"peak over 200 forged proofs: {peak - before} bytes")
    assert peak - before < 1400, peak - before
    assert endpoint.half_open == 0
