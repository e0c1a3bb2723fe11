"""The Prometheus endpoint of our server, scraped while iperf3 runs through the tunnel.

A stock client connects; iperf3 pushes TCP through the tunnel for a few seconds while the
endpoint is scraped twice: every traffic counter (ours and the client's) must grow, the lag
histogram must have samples, and once the traffic has stopped the client's byte counters
must be the ones the status file reports. Meanwhile the management socket is fed what a
broken or hostile client sends (over-long lines, binary garbage, a client that asks for the
real-time log and never reads): the tunnel keeps carrying data and the socket keeps answering.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.mgmt_client import MgmtClient
from tests.e2e.openvpn_peer import (
    IperfResult,
    client_config,
    iperf3_client,
    iperf3_server,
    make_pki,
    server_config,
    start_peer,
)
from tests.netns import NetnsPair

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.iperf3]

PORT = 9109
SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def scrape(pair: NetnsPair) -> tuple[str, dict[str, float]]:
    with pair.entered(pair.ns_a):
        text = urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=10).read()
    values = {}
    for line in text.decode().splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            name, labels, value = match.groups()
            key = name if not labels else f"{name}{{{labels}}}"
            values[key] = float(value)
    return text.decode(), values


def client_key(values: dict[str, float], metric: str) -> str:
    found = [k for k in values if k.startswith(metric + "{") and 'common_name="client"' in k]
    assert len(found) == 1, (metric, sorted(values))
    return found[0]


def abuse_management(sock_path: Path, stop: threading.Event) -> list[str]:
    """Garbage at the management socket until `stop`; what the good client got back."""
    answers = []
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(str(sock_path))
    stuck.sendall(b"log on all\nstate on\nbytecount 1\n")  # then never reads
    with MgmtClient.connect(str(sock_path)) as m:
        m.read_line()
        while not stop.is_set():
            m.send(b"x" * 100_000 + b"\n")  # over-long line
            answers.append(m.reply_line())
            m.send(bytes(b for b in range(256) if b != 10) + b"\n")  # binary garbage
            answers.append(m.reply_line())
            answers.append(m.command("load-stats")[0])
            time.sleep(0.2)
    stuck.close()
    return answers


def test_metrics_under_iperf3_match_the_status_file(netns_pair: NetnsPair,
                                                     tmp_path: Path) -> None:
    pair = netns_pair
    pki = make_pki(tmp_path / "pki")
    subnet = pair.new_subnet()
    status = tmp_path / "status.txt"
    sock = tmp_path / "mgmt.sock"
    text = server_config(pki=pki, local=pair.addr_a, subnet=subnet, cipher="AES-256-GCM",
                         verb=3, extra=[f"metrics-listen 127.0.0.1:{PORT}",
                                        f"status {status} 1", "status-version 2",
                                        f"management {sock} unix"])
    with start_peer(pair, pair.ns_a, kind="ours", role="server", workdir=tmp_path,
                    config_text=text) as server, \
         start_peer(pair, pair.ns_b, kind="stock", role="client", workdir=tmp_path,
                    config_text=client_config(pki=pki, remote=pair.addr_a,
                                              cipher="AES-256-GCM", verb=3)) as client:
        client.wait_up()
        _, before = scrape(pair)
        result: list[IperfResult] = []
        stop = threading.Event()
        abused: list[list[str]] = []
        with iperf3_server(pair, pair.ns_a, subnet[1], tmp_path):
            runner = threading.Thread(target=lambda: result.append(
                iperf3_client(pair, pair.ns_b, subnet[1], seconds=6)))
            abuser = threading.Thread(target=lambda: abused.append(
                abuse_management(sock, stop)))
            runner.start()
            abuser.start()
            time.sleep(3)
            under_load, during = scrape(pair)
            runner.join(60)
            stop.set()
            abuser.join(30)
        assert result and result[0].mbit_per_s > 5, result
        assert all(b > 0 for b in result[0].interval_bytes), "a second without data"
        assert abused and abused[0][:3] == ["ERROR: command line too long",
                                            "ERROR: unknown command, enter 'help' for more "
                                            "options", abused[0][2]]
        assert all(a.startswith("SUCCESS: nclients=1") for a in abused[0][2::3])
        print(f"management: {len(abused[0]) // 3} rounds of long line + garbage + load-stats "
              "answered during iperf3")
        server.assert_running()

        for metric in ("tunnel_client_received_bytes_total", "tunnel_client_sent_bytes_total",
                       "tunnel_client_received_packets_total",
                       "tunnel_client_sent_packets_total"):
            key = client_key(during, metric)
            assert during[key] > before[key], metric
        for metric in ("tunnel_link_received_bytes_total", "tunnel_tun_written_bytes_total",
                       "tunnel_pool_acquires_total", "tunnel_arena_iterations_total"):
            assert during[metric] > before[metric], metric
        assert during["tunnel_event_loop_lag_seconds_count"] > 0
        assert during["tunnel_clients"] == 1
        # The client's kernel sends router solicitations from fe80:: as its TUN comes up:
        # dropped quietly, as stock does, not counted as spoofed sources.
        assert during['tunnel_dropped_packets_total{cause="bad source address"}'] == 0, {
            k: v for k, v in during.items() if k.startswith("tunnel_dropped")}
        assert during[client_key(during, "tunnel_client_handshakes_total")] >= 1

        # Quiet now: the status file (rewritten every second) and a scrape agree.
        time.sleep(2.5)
        _, after = scrape(pair)
        row = next(line for line in status.read_text().splitlines()
                   if line.startswith("CLIENT_LIST,"))
        fields = row.split(",")
        received, sent = int(fields[5]), int(fields[6])
        # a keepalive ping (~100 bytes) may pass between the two reads
        assert abs(after[client_key(after, "tunnel_client_received_bytes_total")]
                   - received) < 500, (row, after)
        assert abs(after[client_key(after, "tunnel_client_sent_bytes_total")] - sent) < 500
        assert after[client_key(after, "tunnel_client_connected_since_seconds")] == int(
            fields[8]) or abs(after[client_key(after, "tunnel_client_connected_since_seconds")]
                              - int(fields[8])) < 1
        print(f"iperf3 {result[0].mbit_per_s:.0f} Mbit/s; scrape under load:")
        print("\n".join(line for line in under_load.splitlines()
                        if line.startswith("tunnel_") and "_bucket" not in line))
