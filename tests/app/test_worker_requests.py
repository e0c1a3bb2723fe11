"""A worker's requests to the supervisor are matched to their answers (no root): a late answer
of a request that timed out is discarded, the next request gets its own, and what the late
answer gave (an address, a pin) is undone by the supervisor, not lost. Over real
SOCK_SEQPACKET socket pairs, as between the processes; the supervisor side is the real
`Supervisor`'s request handling, or scripted where only the worker side is under test."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading

import pytest

from tests.app.worker_sockets import LOG, read
from tunnel.app.worker_ipc import NoAnswer, RemotePool, SupervisorRequests, encode
from tunnel.app.workers import Supervisor

SHORT = 0.2  # the worker's answer timeout in these tests (ANSWER_TIMEOUT is 5 s)


def test_a_late_answer_is_discarded_and_the_next_request_gets_its_own(
        pair: tuple[socket.socket, socket.socket]) -> None:
    worker_end, supervisor = pair
    pool = RemotePool(SupervisorRequests(worker_end, timeout=SHORT), ipaddress.IPv4Address)
    with pytest.raises(NoAnswer, match="did not answer alloc"):
        pool.allocate("alice")  # nobody answers in time
    first = read(supervisor)
    assert first["op"] == "alloc" and first["cn"] == "alice"
    assert read(supervisor) == {"op": "cancel", "id": first["id"]}  # after it, same socket
    # The supervisor answers alice's request late, then bob's: bob gets his own address.
    supervisor.send(encode({"id": first["id"], "address": "10.8.0.2"}))
    threading.Timer(0.05, lambda: supervisor.send(
        encode({"id": read(supervisor)["id"], "address": "10.8.0.3"}))).start()
    assert pool.allocate("bob") == ipaddress.IPv4Address("10.8.0.3")


def test_the_deadline_is_one_for_all_the_stale_answers_read(
        pair: tuple[socket.socket, socket.socket]) -> None:
    worker_end, supervisor = pair
    requests = SupervisorRequests(worker_end, timeout=SHORT)
    for n in range(3):  # stale answers only: discarded, then the request times out
        supervisor.send(encode({"id": 100 + n, "owner": 0}))
    with pytest.raises(NoAnswer):
        requests.ask({"op": "place", "sid": "00" * 8})
    asked = read(supervisor)
    assert read(supervisor) == {"op": "cancel", "id": asked["id"]}
    # The socket is left with the full timeout for the sends that are not answered.
    assert worker_end.gettimeout() == SHORT


def serve_soon(sup: Supervisor) -> threading.Timer:
    """The supervisor reads the worker's requests a moment later (it was busy). The caller
    joins it after its ask: until the timer's read loop ends it may read (and answer) the
    next request too, which on a loaded machine made a 'no answer' step get one."""
    timer = threading.Timer(0.05, sup._on_request, [sup.workers[0]])
    timer.start()
    return timer


def test_a_timed_out_allocs_address_goes_back_to_the_pool(
        supervisor: Supervisor, pair: tuple[socket.socket, socket.socket]) -> None:
    worker_end, supervisor_end = pair
    supervisor_end.setblocking(False)
    supervisor.workers[0].requests = supervisor_end
    pool = RemotePool(SupervisorRequests(worker_end, timeout=SHORT), ipaddress.IPv4Address)
    with pytest.raises(NoAnswer):
        pool.allocate("alice")  # the supervisor is busy for longer than the timeout
    assert supervisor.pool is not None
    supervisor._on_request(supervisor.workers[0])  # now: the alloc, answered, then its cancel
    assert supervisor.pool.clients() == 0  # the one address is free again
    serving = serve_soon(supervisor)
    pool._requests.timeout = 5.0
    # The late answer (the same address, for alice) is discarded; bob gets his own answer.
    assert pool.allocate("bob") == ipaddress.IPv4Address("10.8.0.2")
    serving.join()
    assert supervisor.pool.held[4] == {int(ipaddress.IPv4Address("10.8.0.2")): (0, "bob")}
    serving = serve_soon(supervisor)
    assert pool.allocate("carol") is None  # a pool of one: held by bob, not lost or doubled
    serving.join()


def test_a_timed_out_placements_pin_goes_and_a_resent_proofs_pin_stays(
        supervisor: Supervisor, pair: tuple[socket.socket, socket.socket]) -> None:
    worker_end, supervisor_end = pair
    supervisor_end.setblocking(False)
    worker = supervisor.workers[0]
    worker.requests = worker.control = supervisor_end  # running: it has a control socket
    requests = SupervisorRequests(worker_end, timeout=SHORT)
    place = {"op": "place", "sid": "11" * 8, "addr": ["198.51.100.7", 40000], "data": ""}
    with pytest.raises(NoAnswer):
        requests.ask(place)
    assert supervisor.pool is not None
    supervisor._on_request(worker)  # placed here (pinned), answered late, then cancelled
    assert supervisor.pool.pins == {} and supervisor.pool.placing == {}
    # Asked again in time: pinned, and the worker confirms it made the session.
    serving = serve_soon(supervisor)
    requests.timeout = 5.0
    assert requests.ask(place)["owner"] == 0
    serving.join()
    requests.send({"op": "pin", "sid": "11" * 8, "add": True})
    supervisor._on_request(worker)
    # A resent proof of that session times out: its cancel leaves the session's pin alone.
    requests.timeout = SHORT
    with pytest.raises(NoAnswer):
        requests.ask(place)
    supervisor._on_request(worker)
    assert supervisor.pool.pins == {bytes.fromhex("11" * 8): 0}


def test_the_supervisors_ask_drops_a_late_answer_and_gets_the_next_its_own(
        supervisor: Supervisor, pair: tuple[socket.socket, socket.socket],
        caplog: pytest.LogCaptureFixture) -> None:
    worker_end, supervisor_end = pair  # here the control pair: the supervisor asks
    supervisor_end.setblocking(False)
    worker = supervisor.workers[0]
    worker.control, worker.ready = supervisor_end, True
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        assert supervisor.ask({"op": "status"}, timeout=SHORT) == []  # the worker is busy
    assert "worker 0: no answer to status" in caplog.text
    late = read(worker_end)
    worker_end.send(encode({"id": late["id"], "killed": 7}))  # its answer, after the timeout

    def answer() -> None:
        asked = read(worker_end)
        worker_end.send(encode({"id": asked["id"], "killed": 1}))

    threading.Timer(0.05, answer).start()
    answers = supervisor.ask({"op": "kill", "cn": "alice"}, timeout=5.0)
    assert [(index, got["killed"]) for index, got in answers] == [(0, 1)]
