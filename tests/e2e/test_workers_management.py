"""The management interface of a multi-worker server (`--workers 2`), stock clients.

The interface lives in the supervisor and the clients in the workers: `management-hold`
holds the start of the workers until `hold release`; `status 2` lists the clients of both
workers (one on each: new sessions are handed out in turn) with client ids unique across
them; `load-stats` counts both; `kill IP:port` ends the one client at that address (gone from
`status` at once, the other stays); `client-kill CID` sends the other RESTART, so it comes
back with a new client id; `kill CN` ends every client of that name on whichever worker;
`signal SIGTERM` ends the server with exit code 0. The workers' >CLIENT:ESTABLISHED
notifications reach the supervisor's interface, with the ids `status` lists.

The metrics endpoint (`metrics-listen`) is the supervisor's too and serves every worker's
numbers with a `worker` label.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.mgmt_client import MgmtClient
from tests.e2e.openvpn_peer import (
    INIT_DONE,
    Pki,
    client_config,
    make_pki,
    server_config,
    start_peer,
)
from tests.e2e.status_rows import client_list_rows
from tests.netns import NetnsPair, wait_for
from tunnel import __version__

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping]

CIPHER = "AES-256-GCM"


def client_rows(m: MgmtClient) -> list[dict[str, str]]:
    return client_list_rows(m.command("status 2"))


def wait_rows(m: MgmtClient, count: int, timeout: float = 30) -> list[dict[str, str]]:
    wait_for(lambda: len(client_rows(m)) == count, timeout, 0.3)
    return client_rows(m)


def stock_client(pki: Pki, remote: ipaddress.IPv4Address, dev: str) -> str:
    return client_config(pki=pki, remote=remote, cipher=CIPHER,
                         extra=[f"dev {dev}", "explicit-exit-notify 1"])


@pytest.mark.timeout(240)
def test_status_kill_and_client_kill_across_workers(netns_pair: NetnsPair,
                                                    tmp_path: Path) -> None:
    pair = netns_pair
    pki = make_pki(tmp_path / "pki")
    sock = tmp_path / "mgmt.sock"
    server_text = server_config(
        pki=pki, local=pair.addr_a, subnet=pair.new_subnet(), cipher=CIPHER,
        extra=["duplicate-cn", f"management {sock} unix", "management-hold",
               "explicit-exit-notify 1"])
    with start_peer(pair, pair.ns_a, kind="ours", role="server", workdir=tmp_path,
                    config_text=server_text, args=["--workers", "2"]) as server, \
            contextlib.ExitStack() as stack:
        m = MgmtClient.connect(str(sock))
        assert m.read_line().startswith(">INFO:OpenVPN Management Interface Version 5")
        assert m.read_line() == ">HOLD:Waiting for hold release:0"
        time.sleep(1.0)
        assert INIT_DONE not in server.log(), "started before hold release"
        assert m.command("hold release") == ["SUCCESS: hold release succeeded"]
        server.wait_up(30)
        assert "2 workers" in server.log()

        clients = []
        for index in range(2):
            workdir = tmp_path / f"client{index}"
            workdir.mkdir()
            clients.append(stack.enter_context(start_peer(
                pair, pair.ns_b, kind="stock", role="client", workdir=workdir,
                config_text=stock_client(pki, pair.addr_a, f"tunm{index}"))))
            clients[-1].wait_up()
        # The workers' notifications reach the supervisor's interface.
        established = {int(m.wait_notification(">CLIENT:ESTABLISHED,", 15).split(",")[1])
                       for _ in range(2)}
        rows = wait_rows(m, 2)
        assert len(rows) == 2, rows
        assert {int(row["Peer ID"]) % 2 for row in rows} == {0, 1}, rows  # one per worker
        ids = [int(row["Client ID"]) for row in rows]
        assert len(set(ids)) == 2, rows
        assert {i % 2 for i in ids} == {0, 1}, rows  # worker i numbers i, i + 2, ...
        assert established == set(ids), (established, rows)
        stats = m.command("load-stats")
        assert stats[0].startswith("SUCCESS: nclients=2,"), stats

        # kill IP:port: that one only, gone at once; the other (on the other worker) stays
        victim, other = rows
        address = victim["Real Address"]
        assert m.command(f"kill {address}") == [f"SUCCESS: 1 client(s) at address {address} "
                                                "killed"]
        left = client_rows(m)
        assert [row["Real Address"] for row in left] == [other["Real Address"]], left
        assert m.command(f"kill {address}") == [f"ERROR: client at address {address} "
                                                "not found"]

        # client-kill CID: RESTART; the stock client comes back as a new client id
        cid = int(other["Client ID"])
        assert m.command(f"client-kill {cid}") == ["SUCCESS: client-kill command succeeded"]
        assert m.command(f"client-kill {cid}") == ["ERROR: client-kill command failed"]
        assert wait_for(lambda: any(int(row["Client ID"]) not in ids
                                    for row in client_rows(m)), 30, 0.5), server.tail()

        # kill CN: every client named so, whichever worker holds it (the client killed by
        # address may be back by now, after its ping-restart: then on either worker)
        before = {row["Client ID"] for row in client_rows(m)}
        assert before
        reply = m.command("kill client")
        match = re.fullmatch(r"SUCCESS: common name 'client' found, (\d+) client\(s\) killed",
                             reply[0])
        assert match and int(match.group(1)) >= len(before), (reply, before)
        assert not before & {row["Client ID"] for row in client_rows(m)}

        assert m.command("signal SIGTERM") == ["SUCCESS: signal SIGTERM thrown"]
        server.proc.wait(20)
        assert server.proc.returncode == 0, server.tail()
        assert "Traceback" not in server.log(), server.tail()  # the workers exited cleanly
        m.close()


METRICS_PORT = 9119
SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def scrape(pair: NetnsPair) -> dict[str, float]:
    with pair.entered(pair.ns_a):
        text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics",
                                      timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            name, labels, value = match.groups()
            values[name if not labels else f"{name}{{{labels}}}"] = float(value)
    return values


@pytest.mark.timeout(240)
def test_metrics_endpoint_serves_every_workers_numbers(netns_pair: NetnsPair,
                                                       tmp_path: Path) -> None:
    """The supervisor's endpoint: the series one process would serve (totals summed over the
    workers, each client's own), and per worker its clients and bytes; one client on each
    worker."""
    pair = netns_pair
    pki = make_pki(tmp_path / "pki")
    subnet = pair.new_subnet()
    server_text = server_config(
        pki=pki, local=pair.addr_a, subnet=subnet, cipher=CIPHER,
        extra=["duplicate-cn", f"metrics-listen 127.0.0.1:{METRICS_PORT}"])
    with start_peer(pair, pair.ns_a, kind="ours", role="server", workdir=tmp_path,
                    config_text=server_text, args=["--workers", "2"]) as server, \
            contextlib.ExitStack() as stack:
        server.wait_up(30)
        for index in range(2):
            workdir = tmp_path / f"client{index}"
            workdir.mkdir()
            stack.enter_context(start_peer(
                pair, pair.ns_b, kind="stock", role="client", workdir=workdir,
                config_text=stock_client(pki, pair.addr_a, f"tunx{index}"))).wait_up()
        assert wait_for(lambda: scrape(pair).get("tunnel_clients") == 2, 20, 0.5), \
            sorted(k for k in scrape(pair) if k.startswith("tunnel_clients"))
        for index in range(2):
            assert pair.run(pair.ns_b, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I",
                            f"tunx{index}", str(subnet[1])).returncode == 0
        values = scrape(pair)
        assert values["tunnel_workers"] == 2 and values["tunnel_workers_answered"] == 2
        assert values[f'tunnel_info{{role="server",version="{__version__}"}}'] == 1
        received = {k: v for k, v in values.items()
                    if k.startswith("tunnel_client_received_bytes_total{")}
        assert len(received) == 2 and all(v > 0 for v in received.values()), received
        total = values["tunnel_link_received_bytes_total"]
        per_worker = [values[f'tunnel_worker_link_received_bytes{{worker="{w}"}}']
                      for w in ("0", "1")]
        assert all(v > 0 for v in per_worker) and sum(per_worker) == total, (per_worker, total)
        assert [values[f'tunnel_worker_clients{{worker="{w}"}}'] for w in ("0", "1")] == [1, 1]
        server.assert_running()
