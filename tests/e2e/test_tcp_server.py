"""Our TCP server (`proto tcp-server`) with several stock clients, a slow one, and bad input.

- Two stock clients on one listening socket, a third refused by `max-clients`; `tcp-nodelay`
  pushed as stock pushes it.
- One client stops reading (SIGSTOP) while the server floods it: its queue is bounded and its
  drops counted, and the other client's iperf3 goes on at a normal rate.
- Bad input from the client namespace, bounded: length prefixes the frame does not allow,
  garbage in valid frames, silent connections, thousands of connections from one source. Each
  is closed and counted (TCP_STATS in the status file), the server's memory stays bounded, and
  a stock client still connects afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import resource
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.openvpn_peer import (
    PeerProcess,
    Pki,
    client_config,
    iperf3_client,
    iperf3_server,
    ping,
    server_config,
    start_peer,
)
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping, pytest.mark.iperf3]

PORT = 1194
HAND_WINDOW = 3
CIPHER = "AES-256-GCM"
FLOOD_CONNECTIONS = 3000
MAX_CLIENTS = 64
# 5000 datagrams/s of 1300 bytes for 5 s: 32 MB, far more than the socket buffers between the
# server and the stopped client hold, so the server's own bounded queue must fill and drop. The
# rate is paced: an unpaced sender (~90k/s) saturates the single-threaded server's CPU, and the
# kernel then drops the fast client's packets at the shared TUN queue, which measures capacity,
# not whether one slow client stalls the others.
FLOOD_SCRIPT = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic()
end, data, sent = start + 5, b"x" * 1300, 0
while time.monotonic() < end:
    for _ in range(100):
        sock.sendto(data, (sys.argv[1], 9))
    sent += 100
    time.sleep(max(0.0, start + sent / 5000 - time.monotonic()))
print("sent", sent)
"""


def tcp_server_text(pki: Pki, pair: NetnsPair, subnet: ipaddress.IPv4Network, status: Path,
                    extra: list[str]) -> str:
    return server_config(pki=pki, local=pair.addr_a, subnet=subnet, cipher=CIPHER, extra=[
        "proto tcp4-server", f"status {status} 1", "status-version 2", *extra])


def stock_client_text(pki: Pki, pair: NetnsPair, dev: str) -> str:
    return client_config(pki=pki, remote=pair.addr_a, cipher=CIPHER,
                         extra=["proto tcp4-client", f"dev {dev}"])


def tcp_stats(status: Path) -> dict[str, int]:
    """TCP_STATS of our status file as {column: value}."""
    header: list[str] = []
    for line in status.read_text().splitlines():
        fields = line.split(",")
        if fields[:2] == ["HEADER", "TCP_STATS"]:
            header = fields[2:]
        elif fields[0] == "TCP_STATS" and header:
            return dict(zip(header, (int(v) for v in fields[1:]), strict=True))
    return {}


def link_stats(status: Path) -> dict[str, int]:
    header: list[str] = []
    for line in status.read_text().splitlines():
        fields = line.split(",")
        if fields[:2] == ["HEADER", "LINK_STATS"]:
            header = fields[2:]
        elif fields[0] == "LINK_STATS" and header:
            return dict(zip(header, (int(v) for v in fields[1:]), strict=True))
    return {}


def rss_kib(peer: PeerProcess) -> int:
    for line in Path(f"/proc/{peer.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def addresses_in(pair: NetnsPair, ns: str, subnet: ipaddress.IPv4Network) -> dict[str, str]:
    """{device: address} of the devices in `ns` that have an address in `subnet`."""
    out = pair.run(ns, "ip", "-j", "-4", "addr", "show", check=True).stdout
    found = {}
    for link in json.loads(out):
        for info in link.get("addr_info", []):
            if ipaddress.IPv4Address(info["local"]) in subnet:
                found[link["ifname"]] = info["local"]
    return found


@contextlib.contextmanager
def more_files() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FLOOD_CONNECTIONS + 1024), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- many clients, max-clients, tcp-nodelay, a slow client ------------------------------------


@pytest.mark.timeout(180)
def test_many_stock_clients_max_clients_and_a_slow_one(netns_pair: NetnsPair, tmp_path: Path,
                                                        pki: Pki) -> None:
    pair = netns_pair
    subnet = pair.new_subnet()
    status = tmp_path / "status.txt"
    server_text = tcp_server_text(pki, pair, subnet, status,
                                  ["duplicate-cn", "max-clients 2", "tcp-nodelay"])
    with start_peer(pair, pair.ns_a, kind="ours", role="server", config_text=server_text,
                    workdir=tmp_path) as server, contextlib.ExitStack() as stack:
        server.wait_up()
        clients = []
        for index in range(2):
            text = stock_client_text(pki, pair, f"tunc{index}")
            (tmp_path / str(index)).mkdir()
            clients.append(stack.enter_context(start_peer(
                pair, pair.ns_b, kind="stock", role="client", config_text=text,
                workdir=tmp_path / str(index))))
        for client in clients:
            client.wait_up()
            assert "socket-flags TCP_NODELAY" in client.log()  # pushed, as stock pushes it
        vips = addresses_in(pair, pair.ns_b, subnet)
        assert len(vips) == 2, vips
        for dev in vips:
            # -I DEV: out of that client's device (both have the same subnet route)
            assert wait_for(lambda dev=dev: pair.run(
                pair.ns_b, "ping", "-c", "1", "-W", "2", "-I", dev, str(subnet[1])
            ).returncode == 0, 15, 0.2), server.describe()
        # A third client: max-clients 2, so its connection is accepted and closed at once.
        (tmp_path / "third").mkdir()
        third = stack.enter_context(start_peer(
            pair, pair.ns_b, kind="stock", role="client",
            config_text=stock_client_text(pki, pair, "tunc2"), workdir=tmp_path / "third"))
        assert wait_for(lambda: tcp_stats(status).get("Refused (max-clients)", 0) >= 1, 20, 0.5)
        assert "Initialization Sequence Completed" not in third.log()

        # The slow client: stopped, so it reads nothing, while the server floods it.
        slow = clients[0]
        slow_vip = vips["tunc0"]
        # Traffic from ns_b to the server's tunnel address now leaves by the fast client only.
        pair.run(pair.ns_b, "ip", "route", "del", str(subnet), "dev", "tunc0", check=True)
        rss_before = rss_kib(server)
        os.kill(slow.proc.pid, signal.SIGSTOP)
        try:
            # UDP towards the stopped client for 5 s: far more than the kernel's socket
            # buffers between server and client hold, so the server's own queue must fill.
            flood = pair.spawn(pair.ns_a, *pair.python_argv(), "-c", FLOOD_SCRIPT, slow_vip,
                               log_path=tmp_path / "flood.log")
            with iperf3_server(pair, pair.ns_a, subnet[1], tmp_path):
                result = iperf3_client(pair, pair.ns_b, subnet[1], 3)
            flood.wait(20)
        finally:
            os.kill(slow.proc.pid, signal.SIGCONT)
        mbit = result.mbit_per_s
        rss_after = rss_kib(server)
        time.sleep(1.5)  # one more status write
        dropped = link_stats(status)["UDP Out Dropped"]
        print(f"\nslow client: fast client's iperf3 {mbit:.1f} Mbit/s while the stopped one was "
              f"flooded; {dropped} packets dropped for it; server RSS {rss_before} -> "
              f"{rss_after} KiB; TCP_STATS {tcp_stats(status)}")
        assert mbit > 5.0, result
        assert dropped > 0  # its bounded queue filled and the overflow was counted
        assert rss_after - rss_before < 64 * 1024
        assert wait_for(lambda: ping(pair, pair.ns_b, subnet[1], count=1).ok, 10, 0.2)
        server.assert_running()


# -- bad input -----------------------------------------------------------------------------


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes (EOF or reset) within `timeout`; data it sends is read."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def _connect(pair: NetnsPair) -> socket.socket:
    with pair.entered(pair.ns_b):
        sock = socket.create_connection((str(pair.addr_a), PORT), timeout=5)
    return sock


@pytest.mark.timeout(240)
def test_bad_input_is_closed_counted_and_bounded(netns_pair: NetnsPair, tmp_path: Path,
                                                 pki: Pki) -> None:
    pair = netns_pair
    subnet = pair.new_subnet()
    status = tmp_path / "status.txt"
    server_text = tcp_server_text(pki, pair, subnet, status,
                                  [f"hand-window {HAND_WINDOW}", f"max-clients {MAX_CLIENTS}"])
    with start_peer(pair, pair.ns_a, kind="ours", role="server", config_text=server_text,
                    workdir=tmp_path) as server, more_files():
        server.wait_up()
        rss_start = rss_kib(server)
        figures: dict[str, object] = {}

        # 1. length prefixes the frame does not allow: 0xFFFF, 0 -> closed at once
        for prefix in (b"\xff\xff", b"\x00\x00", b"\x08\x00"):
            for _ in range(10):
                with _connect(pair) as sock:
                    sock.sendall(prefix + secrets.token_bytes(64))
                    assert _closed_by_server(sock, 5), prefix
        assert wait_for(lambda: tcp_stats(status).get("Framing Errors", 0) >= 30, 10, 0.3)

        # 2. garbage in valid frames, and 3. silent connections: closed after hand-window
        started = time.monotonic()
        garbage = [_connect(pair) for _ in range(10)]
        silent = [_connect(pair) for _ in range(10)]
        for sock in garbage:
            sock.sendall(b"".join(len(p).to_bytes(2, "big") + p
                                  for p in (secrets.token_bytes(40) for _ in range(200))))
        for sock in garbage + silent:
            assert _closed_by_server(sock, HAND_WINDOW + 5)
            sock.close()
        figures["garbage+silent closed after s"] = round(time.monotonic() - started, 1)

        # 4. thousands of connections from one source
        flood: list[socket.socket] = []
        refused_or_failed = 0
        with pair.entered(pair.ns_b):
            for _ in range(FLOOD_CONNECTIONS):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                err = sock.connect_ex((str(pair.addr_a), PORT))
                if err not in (0, errno.EINPROGRESS):
                    refused_or_failed += 1
                    sock.close()
                    continue
                flood.append(sock)
        rss_peak = rss_kib(server)
        time.sleep(1.0)
        rss_peak = max(rss_peak, rss_kib(server))
        server.assert_running()
        # all of them closed by the server: max-clients at once, the rest after hand-window
        def open_on_server() -> int:
            return tcp_stats(status).get("Open", -1)

        assert wait_for(lambda: open_on_server() == 0, HAND_WINDOW + 30, 0.5), tcp_stats(status)
        for sock in flood:
            sock.close()
        stats = tcp_stats(status)
        figures.update(stats)
        figures["flood connects not even started"] = refused_or_failed
        figures["RSS KiB start/peak/end"] = (rss_start, rss_peak, rss_kib(server))
        print(f"\nbad input figures: {figures}")
        assert stats["Framing Errors"] >= 30
        assert stats["Half-Open Closed"] >= 20
        assert stats["Refused (max-clients)"] + stats["Half-Open Closed"] >= (
            FLOOD_CONNECTIONS - refused_or_failed) * 0.9
        assert rss_peak - rss_start < 64 * 1024  # bounded: well under 64 MiB for 3000 sockets

        # 5. the server survived and serves a real client
        with start_peer(pair, pair.ns_b, kind="stock", role="client",
                        config_text=stock_client_text(pki, pair, "tunc9"),
                        workdir=tmp_path) as client:
            client.wait_up()
            assert wait_for(lambda: ping(pair, pair.ns_b, subnet[1], count=1).ok, 15, 0.2)
        server.assert_running()
