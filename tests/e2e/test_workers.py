"""A multi-worker server (`--workers 2`) with stock clients, in namespaces.

- Four stock clients on two workers, two on each (a new session is placed on the least busy
  worker once its cookie proved): every
  client pings the server's tunnel address, and the
  server's namespace pings every client's address (the TUN steering program must hand each
  packet to the queue of the worker holding that client); the status file lists the clients of
  both workers, each with its own address and a peer-id of its worker (peer_id % 2).
- NAT rebinding: a stock client behind a UDP relay that changes its outbound source port four
  times; the session stays (no new handshake, the status shows the new port), and pings go on.
  With the kernel's default 4-tuple hash, four new ports would land on the other worker with
  probability 15/16.
- A worker killed with SIGKILL is restarted; the other worker's client keeps its session.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import select
import signal
import socket
import threading
from pathlib import Path

import pytest

from tests.e2e.openvpn_peer import (
    PeerProcess,
    Pki,
    client_config,
    make_pki,
    ping,
    server_config,
    start_peer,
)
from tests.e2e.status_rows import client_list_rows
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping]

CIPHER = "AES-256-GCM"
PORT = 1194
WORKERS = ["--workers", "2"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def clients_in_status(status: Path) -> list[dict[str, str]]:
    """CLIENT_LIST rows of a status-version 2 file as {column: value}."""
    try:
        text = status.read_text()
    except FileNotFoundError:
        return []
    return client_list_rows(text.splitlines())


def server_text(pki: Pki, pair: NetnsPair, subnet: ipaddress.IPv4Network, status: Path,
                extra: tuple[str, ...] = ()) -> str:
    return server_config(pki=pki, local=pair.addr_a, subnet=subnet, cipher=CIPHER, extra=[
        "duplicate-cn", f"status {status} 1", "status-version 2", *extra])


def stock_client(pki: Pki, remote: ipaddress.IPv4Address, dev: str, port: int = PORT,
                 extra: tuple[str, ...] = ()) -> str:
    # explicit-exit-notify: a client the test stops is gone from the server at once (not
    # after its ping-restart), so the status lists exactly the clients running.
    return client_config(pki=pki, remote=remote, cipher=CIPHER, port=port,
                         extra=[f"dev {dev}", "explicit-exit-notify 1", *extra])


def start_clients(pair: NetnsPair, stack: contextlib.ExitStack, pki: Pki, tmp_path: Path,
                  count: int) -> list[PeerProcess]:
    clients = []
    for index in range(count):
        workdir = tmp_path / f"client{index}"
        workdir.mkdir(exist_ok=True)
        clients.append(stack.enter_context(start_peer(
            pair, pair.ns_b, kind="stock", role="client",
            config_text=stock_client(pki, pair.addr_a, f"tunw{index}"), workdir=workdir)))
    return clients


def route_replies(pair: NetnsPair, subnet: ipaddress.IPv4Network) -> dict[str, str]:
    """Several clients share the client namespace, each with a route to the whole subnet, so
    a reply would leave by whichever device comes first (and the server rightly drops it:
    not that client's source address). A rule per client address sends it out of its own
    device. {address: device}."""
    out = pair.run(pair.ns_b, "ip", "-j", "-4", "addr", "show", check=True).stdout
    found: dict[str, str] = {}
    for link in json.loads(out):
        for info in link.get("addr_info", []):
            if ipaddress.IPv4Address(info["local"]) in subnet:
                found[info["local"]] = link["ifname"]
    for table, (address, dev) in enumerate(sorted(found.items()), start=100):
        pair.run(pair.ns_b, "ip", "route", "replace", str(subnet), "dev", dev, "table",
                 str(table), check=True)
        pair.run(pair.ns_b, "ip", "rule", "add", "from", address, "table", str(table),
                 check=True)
    return found


def wait_rows(status: Path, count: int, timeout: float = 30) -> list[dict[str, str]]:
    """The status file's clients once it lists exactly `count` (or what it lists then)."""
    wait_for(lambda: len(clients_in_status(status)) == count, timeout, 0.25)
    return clients_in_status(status)


@pytest.mark.timeout(240)
def test_two_workers_four_stock_clients_ping_both_ways_and_status_lists_all(
        netns_pair: NetnsPair, tmp_path: Path, pki: Pki) -> None:
    pair = netns_pair
    subnet = pair.new_subnet()
    status = tmp_path / "status.txt"
    with start_peer(pair, pair.ns_a, kind="ours", role="server", workdir=tmp_path,
                    config_text=server_text(pki, pair, subnet, status),
                    args=WORKERS) as server, contextlib.ExitStack() as stack:
        server.wait_up()
        assert "2 workers" in server.log()
        clients = start_clients(pair, stack, pki, tmp_path, 4)
        for client in clients:
            client.wait_up()
        rows = wait_rows(status, 4)
        # New sessions are placed on the least busy worker (SharedPool.place), not by their
        # random session id (which put all four on one worker 1 time in 8): two on each.
        per_worker = sorted(sum(1 for row in rows if int(row["Peer ID"]) % 2 == w)
                            for w in (0, 1))
        assert per_worker == [2, 2], rows
        assert len(rows) == 4, rows
        vips = [row["Virtual Address"] for row in rows]
        assert len(set(vips)) == 4, vips  # one pool for both workers: no address twice
        for index, _client in enumerate(clients):
            dev = f"tunw{index}"
            assert wait_for(lambda dev=dev: pair.run(
                pair.ns_b, "ping", "-c", "1", "-W", "2", "-I", dev, str(subnet[1])
            ).returncode == 0, 15, 0.2), server.describe()
        route_replies(pair, subnet)
        for vip in vips:
            # From the server's side: the kernel sends it into the TUN, and the steering
            # program picks the queue of the worker that holds this client.
            result = ping(pair, pair.ns_a, ipaddress.IPv4Address(vip), count=3)
            assert result.ok and result.received == 3, (vip, result.output, server.describe())
        server.assert_running()
        log = server.log()
        assert "worker 0: " in log and "worker 1: " in log


class UdpRelay:
    """A NAT stand-in in the client's namespace: the client talks to 127.0.0.1:`port`; the
    relay forwards from an outbound socket whose source port `rebind()` changes."""

    def __init__(self, pair: NetnsPair, server: tuple[str, int]) -> None:
        self.server = server
        with pair.entered(pair.ns_b):
            self.inside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.inside.bind(("127.0.0.1", 0))
            self.outside = self._new_outside()
        self.port = self.inside.getsockname()[1]
        self.client: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pair = pair
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ports: list[int] = [self.outside.getsockname()[1]]

    @staticmethod
    def _new_outside() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", 0))
        return sock

    def rebind(self) -> int:
        with self._pair.entered(self._pair.ns_b):
            new = self._new_outside()
        with self._lock:
            old, self.outside = self.outside, new
        old.close()
        self.ports.append(new.getsockname()[1])
        return self.ports[-1]

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                outside = self.outside
            try:
                ready, _, _ = select.select([self.inside, outside], [], [], 0.1)
            except (OSError, ValueError):
                continue
            for sock in ready:
                try:
                    data, addr = sock.recvfrom(65536)
                except OSError:
                    continue
                if sock is self.inside:
                    self.client = addr
                    with contextlib.suppress(OSError):
                        outside.sendto(data, self.server)
                elif self.client is not None and sock is outside:
                    self.inside.sendto(data, self.client)

    def __enter__(self) -> UdpRelay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(5)
        self.inside.close()
        self.outside.close()


@pytest.mark.timeout(240)
def test_two_workers_session_survives_source_port_changes(
        netns_pair: NetnsPair, tmp_path: Path, pki: Pki) -> None:
    pair = netns_pair
    subnet = pair.new_subnet()
    status = tmp_path / "status.txt"
    pair.run(pair.ns_b, "ip", "link", "set", "lo", "up", check=True)
    with start_peer(pair, pair.ns_a, kind="ours", role="server", workdir=tmp_path,
                    config_text=server_text(pki, pair, subnet, status),
                    args=WORKERS) as server, \
            UdpRelay(pair, (str(pair.addr_a), PORT)) as relay, \
            start_peer(pair, pair.ns_b, kind="stock", role="client", workdir=tmp_path,
                       config_text=stock_client(pki, ipaddress.IPv4Address("127.0.0.1"),
                                                "tunf0", port=relay.port)) as client:
        server.wait_up()
        client.wait_up()
        rows = wait_rows(status, 1)
        assert len(rows) == 1, rows
        peer_id = rows[0]["Peer ID"]
        for _ in range(4):
            port = relay.rebind()
            # Traffic from the new port: the server floats the session to it.
            assert wait_for(lambda: ping(pair, pair.ns_b, subnet[1], count=1).ok, 15, 0.2), \
                server.describe()
            assert wait_for(lambda port=port: any(
                row["Real Address"].endswith(f":{port}") for row in clients_in_status(status)),
                10, 0.25), (port, clients_in_status(status), server.describe())
            result = ping(pair, pair.ns_a, ipaddress.IPv4Address(rows[0]["Virtual Address"]),
                          count=2)
            assert result.ok, result.output
        rows = clients_in_status(status)
        assert len(rows) == 1 and rows[0]["Peer ID"] == peer_id, rows
        # One handshake only: the session was kept, not re-made from the new address.
        assert len(re.findall(r"Peer Connection Initiated", client.log())) == 1, client.tail()
        server.assert_running()


def worker_pids(server: PeerProcess) -> dict[int, int]:
    found: dict[int, int] = {}
    for match in re.finditer(r"worker (\d+) \(pid (\d+)\) running", server.log()):
        found[int(match.group(1))] = int(match.group(2))
    return found


@pytest.mark.timeout(240)
def test_a_killed_worker_is_restarted_and_the_other_keeps_its_clients(
        netns_pair: NetnsPair, tmp_path: Path, pki: Pki) -> None:
    pair = netns_pair
    subnet = pair.new_subnet()
    status = tmp_path / "status.txt"
    with start_peer(pair, pair.ns_a, kind="ours", role="server", workdir=tmp_path,
                    config_text=server_text(pki, pair, subnet, status),
                    args=WORKERS) as server, contextlib.ExitStack() as stack:
        server.wait_up()
        clients = start_clients(pair, stack, pki, tmp_path, 3)
        for client in clients:
            client.wait_up()
        rows = wait_rows(status, 3)
        assert len(rows) == 3, rows
        pids = worker_pids(server)
        assert set(pids) == {0, 1}, server.log()
        # Kill a worker: the other one's clients must go on undisturbed.
        by_worker: dict[int, list[dict[str, str]]] = {0: [], 1: []}
        for row in rows:
            by_worker[int(row["Peer ID"]) % 2].append(row)
        victim = 0 if len(by_worker[1]) >= 1 else 1
        survivor_rows = by_worker[1 - victim]
        os.kill(pids[victim], signal.SIGKILL)
        assert wait_for(lambda: len(worker_pids(server)) >= 2 and
                        worker_pids(server)[victim] != pids[victim], 20, 0.2), server.log()
        assert f"worker {victim} (pid {pids[victim]}) ended (signal SIGKILL)" in server.log()
        route_replies(pair, subnet)
        for row in survivor_rows:
            result = ping(pair, pair.ns_a, ipaddress.IPv4Address(row["Virtual Address"]),
                          count=3)
            assert result.ok and result.received == 3, result.output
        # The killed worker's clients are gone from the status (they reconnect on their own
        # after their ping-restart; not waited for here).
        assert wait_for(lambda: {r["Peer ID"] for r in clients_in_status(status)} ==
                        {r["Peer ID"] for r in survivor_rows}, 10, 0.25), \
            clients_in_status(status)
        server.assert_running()
