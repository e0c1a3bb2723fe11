"""A multi-worker server keeps no per-source state before a peer proves it can receive, in
the kernel either, and still spreads sessions evenly (real kernel, real workers, stock
clients, in namespaces).

- A flood of 20000 HARD_RESET_CLIENT_V2 (fresh session ids, 256 source ports) while two
  stock clients connect: both are up within seconds (not hand-window), and the kernel's
  steering map holds exactly their two sessions afterwards: the reuseport program has one
  map, written only by the supervisor for sessions that exist.
- Four stock clients connecting one after another land 2 + 2 on two workers; every session
  is pinned as soon as it exists (a handshake that never completes too) and unpinned when it
  ends (a client leaving, a handshake timing out at hand-window).
- A cookie answered by worker 0 and proved there makes a session on worker 1: the
  supervisor placed it there, worker 0 handed the datagram over, worker 1 verified the
  cookie with the shared key and made the session (its pin stays only if it did); the
  proof is counted once in the server's link totals (`load-stats` bytesin), by the worker
  that read it (the metrics' per-worker link bytes).

The kernel maps are read from the supervisor's descriptors (/proc/PID/fdinfo) and opened
by id through bpf(2).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mgmt_client import MgmtClient
from tests.e2e.openvpn_peer import PeerProcess, Pki, make_pki, start_peer
from tests.e2e.test_workers import WORKERS, clients_in_status, server_text, stock_client
from tests.e2e.test_workers_management import METRICS_PORT, scrape
from tests.netns import NetnsPair, wait_for
from tunnel.io.steering import _Bpf, hashed_worker, map_keys

pytestmark = [pytest.mark.root, pytest.mark.openvpn]

PORT = 1194
_BPF_MAP_LOOKUP_ELEM, _BPF_MAP_GET_FD_BY_ID = 1, 14
_HASH, _LRU_HASH, _ARRAY = 1, 9, 2


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def bpf_maps(pid: int) -> list[dict[str, int]]:
    """The BPF maps process `pid` holds a descriptor of: their fdinfo fields."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if "map_id" in fields:
                found.append({k: int(fields[k].strip(), 0) for k in
                              ("map_type", "key_size", "value_size", "max_entries", "map_id")})
    return found


class SessionMap:
    """The supervisor's pinned map (client session id -> worker), opened by its id."""

    def __init__(self, pid: int) -> None:
        maps = bpf_maps(pid)
        session_maps = [m for m in maps if m["map_type"] == _HASH and m["key_size"] == 8]
        assert len(session_maps) == 1, maps
        self.info = session_maps[0]
        self.maps = maps
        self.bpf = _Bpf()
        attr = struct.pack("<III", self.info["map_id"], 0, 0)
        self.fd = self.bpf.call(_BPF_MAP_GET_FD_BY_ID, attr, "cannot open the session map")

    def entries(self) -> dict[bytes, int]:
        out = {}
        for key in map_keys(self.bpf, self.fd, 8):
            kbuf = ctypes.create_string_buffer(key, 8)
            value = ctypes.create_string_buffer(4)
            attr = struct.pack("<IIQQQ", self.fd, 0, ctypes.addressof(kbuf),
                               ctypes.addressof(value), 0)
            with contextlib.suppress(OSError):  # gone between the listing and the lookup
                self.bpf.call(_BPF_MAP_LOOKUP_ELEM, attr, "lookup")
                out[key] = struct.unpack("<I", value.raw)[0]
        return out

    def close(self) -> None:
        os.close(self.fd)


@contextlib.contextmanager
def workers_server(pair: NetnsPair, tmp_path: Path, pki: Pki, extra: tuple[str, ...] = ()
                   ) -> Iterator[tuple[PeerProcess, SessionMap, Path]]:
    subnet = pair.new_subnet()
    status = tmp_path / "status.txt"
    with start_peer(pair, pair.ns_a, kind="ours", role="server", workdir=tmp_path,
                    config_text=server_text(pki, pair, subnet, status, extra),
                    args=WORKERS) as server:
        server.wait_up()
        sessions = SessionMap(server.proc.pid)
        try:
            yield server, sessions, status
        finally:
            sessions.close()


def generator(pair: NetnsPair, tmp_path: Path, name: str, *argv: str) -> PeerProcess:
    log = tmp_path / f"{name}.log"
    proc = pair.spawn(pair.ns_b, *pair.python_argv(), "-m", "tests.e2e.workers_flood", *argv,
                      log_path=log)
    return PeerProcess(pair, pair.ns_b, name, proc, log, log)


def result(gen: PeerProcess, timeout: float) -> dict[str, int]:
    assert wait_for(lambda: gen.proc.poll() is not None, timeout, 0.1), gen.describe()
    assert gen.proc.returncode == 0, gen.describe()
    return dict(json.loads(gen.log().strip().splitlines()[-1]))


def start_client(pair: NetnsPair, stack: contextlib.ExitStack, pki: Pki, tmp_path: Path,
                 index: int) -> PeerProcess:
    workdir = tmp_path / f"client{index}"
    workdir.mkdir(exist_ok=True)
    return stack.enter_context(start_peer(
        pair, pair.ns_b, kind="stock", role="client", workdir=workdir,
        config_text=stock_client(pki, pair.addr_a, f"tuns{index}")))


@pytest.mark.timeout(180)
def test_a_reset_flood_keeps_no_kernel_state_and_does_not_delay_handshakes(
        netns_pair: NetnsPair, tmp_path: Path, pki: Pki) -> None:
    pair = netns_pair
    # connect-freq-initial high: what is measured is the steering, not the stateless
    # answers' rate limit (which a reset flood exhausts with one process as well).
    with workers_server(pair, tmp_path, pki, ("connect-freq-initial 1000000 10",)) as (
            server, sessions, _status), contextlib.ExitStack() as stack:
        # The reuseport program's only map of sessions, and no map a packet could write
        # (an LRU of handshakes, a counter): the others are the TUN steering's LPM trie.
        assert not [m for m in sessions.maps if m["map_type"] in (_LRU_HASH, _ARRAY)], \
            sessions.maps
        assert sessions.entries() == {}
        flood = generator(pair, tmp_path, "flood", "resets", str(pair.addr_a), str(PORT),
                          "20000", "3")
        time.sleep(0.5)  # the flood is on while the clients do their handshakes
        clients = [start_client(pair, stack, pki, tmp_path, i) for i in range(2)]
        took = [client.wait_up(timeout=30) for client in clients]
        sent = result(flood, 30)["sent"]
        assert sent >= 15000, sent
        # Up within seconds: a handshake whose packets went astray would wait for its
        # hand-window (60 s) to start again.
        assert max(took) < 10, took
        # 20000 resets wrote nothing: the map holds the two clients' sessions only.
        entries = sessions.entries()
        assert len(entries) == 2 and sorted(entries.values()) == [0, 1], entries
        server.assert_running()


@pytest.mark.timeout(240)
def test_four_clients_land_two_and_two_and_each_session_is_pinned_while_it_exists(
        netns_pair: NetnsPair, tmp_path: Path, pki: Pki) -> None:
    pair = netns_pair
    with workers_server(pair, tmp_path, pki, ("hand-window 6",)) as (
            server, sessions, status), contextlib.ExitStack() as stack:
        clients = []
        for index in range(4):  # one after another: each is up before the next starts
            clients.append(start_client(pair, stack, pki, tmp_path, index))
            clients[-1].wait_up()
            assert wait_for(lambda n=index + 1: len(sessions.entries()) == n, 5, 0.1), \
                sessions.entries()
        assert wait_for(lambda: len(clients_in_status(status)) == 4, 30, 0.25)
        rows = clients_in_status(status)
        per_worker = sorted(sum(1 for row in rows if int(row["Peer ID"]) % 2 == w)
                            for w in (0, 1))
        assert per_worker == [2, 2], rows
        assert sorted(sessions.entries().values()) == [0, 0, 1, 1]
        # Client ids grow in the order the clients came (one counter for all workers, as in
        # one stock process), whichever worker each is on: by their addresses, also given in
        # turn.
        by_address = sorted(rows, key=lambda row: ipaddress.ip_address(row["Virtual Address"]))
        assert [int(row["Client ID"]) for row in by_address] == [0, 1, 2, 3], rows
        # A client leaves (explicit-exit-notify): its pin goes with its session.
        clients[0].stop()
        assert wait_for(lambda: len(sessions.entries()) == 3, 10, 0.1), sessions.entries()
        # A handshake that never completes: pinned once its cookie proved, unpinned when it
        # times out at hand-window (6 s).
        stalled = os.urandom(8)
        gen = generator(pair, tmp_path, "stall", "stall", str(pair.addr_a), str(PORT), "20",
                        stalled.hex())
        assert wait_for(lambda: stalled in sessions.entries(), 10, 0.1), gen.describe()
        began = time.monotonic()
        assert wait_for(lambda: stalled not in sessions.entries(), 20, 0.2), \
            sessions.entries()
        assert time.monotonic() - began > 3  # gone with its hand-window, not at once
        assert len(sessions.entries()) == 3
        gen.stop()
        server.assert_running()


@pytest.mark.timeout(120)
def test_a_cookie_answered_by_one_worker_makes_a_session_on_the_other(
        netns_pair: NetnsPair, tmp_path: Path, pki: Pki) -> None:
    pair = netns_pair
    sock = tmp_path / "mgmt.sock"
    with workers_server(pair, tmp_path, pki, (f"management {sock} unix",
                                              f"metrics-listen 127.0.0.1:{METRICS_PORT}")) as (
            server, sessions, _status):
        # Two session ids that both hash to worker 0: worker 0 answers both resets and gets
        # both proofs. The supervisor places them on different workers (the least busy).
        sids = [os.urandom(8) for _ in range(64)]
        sids = [s for s in sids if hashed_worker(s, 2) == 0][:2]
        gen = generator(pair, tmp_path, "stall", "stall", str(pair.addr_a), str(PORT), "30",
                        *(s.hex() for s in sids))
        assert wait_for(lambda: len(sessions.entries()) == 2, 10, 0.1), gen.describe()
        time.sleep(1)  # worker 1's confirmation (or its refusal, which would unpin) is in
        entries = sessions.entries()
        assert set(entries) == set(sids) and sorted(entries.values()) == [0, 1], entries
        said = json.loads(gen.log().strip().splitlines()[0])
        assert said["answered"] == 2, gen.describe()
        # The proof handed to worker 1 is counted once in the server's link totals (by
        # worker 0, which read it): bytesin is what the generator sent, nothing more.
        m = MgmtClient.connect(str(sock))
        try:
            assert m.read_line().startswith(">INFO:")
            stats = m.command("load-stats")
        finally:
            m.close()
        found = re.fullmatch(r"SUCCESS: nclients=\d+,bytesin=(\d+),bytesout=\d+", stats[0])
        assert found is not None and int(found.group(1)) == said["sent"], (stats, said)
        # ... by the worker that read it from its socket (0), not by the one it was handed
        # to (1), which counts it in its new session's bytes only: per worker the link
        # figures are what each socket received.
        values = scrape(pair)
        assert [values[f'tunnel_worker_link_received_bytes{{worker="{w}"}}']
                for w in ("0", "1")] == [said["sent"], 0], values
        gen.stop()
        # The shared key comes through a pipe: only its descriptor's number is in the
        # workers' command lines (which /proc shows everyone), and their environment is the
        # supervisor's, nothing added.
        for match in re.finditer(r"worker \d+ \(pid (\d+)\) running", server.log()):
            pid = int(match.group(1))
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert argv[argv.index(b"--cookie-key-fd") + 1].isdigit(), argv
            assert Path(f"/proc/{pid}/environ").read_bytes() == Path(
                f"/proc/{server.proc.pid}/environ").read_bytes()
        server.assert_running()
