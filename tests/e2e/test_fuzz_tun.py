"""`tunnel server` and `tunnel client` with real TUN devices in namespaces, fed hostile input.

Empty, truncated, oversized and random datagrams (tests/io/hostile.py) go to the server's
port and to the nobind client's ephemeral port, odd packets go into both TUN devices; both
processes must keep running without an internal error, and the tunnel must still carry a ping.
Twice: with plain TUN reads (`TUNNEL_TSO=0`), and with TSO reads (`TUNNEL_TSO=1`, the default
where the extension is built: super-packets, partial checksums, the read-ahead), whose device
path the odd packets then take.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.test_ours_tun import (
    _CLIENT_ADDRESS,
    PORT,
    START_TIMEOUT,
    _spawn,
    _wait_log,
    _write_configs,
)
from tests.netns import NetnsPair

pytestmark = [pytest.mark.root, pytest.mark.ping]


def _hostile(pair: NetnsPair, ns: str, host: str, port: int) -> None:
    result = pair.run(ns, *pair.python_argv(), "-m", "tests.io.hostile", host, str(port),
                      timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 1000, result.stdout


def _udp_port_of(pair: NetnsPair, ns: str, pid: int) -> int:
    ss = pair.run(ns, "ss", "-Hunap", timeout=10).stdout
    for line in ss.splitlines():
        if f"pid={pid}," in line or "python" in line:
            return int(line.split()[3].rsplit(":", 1)[1])
    raise AssertionError(f"no UDP socket of the client in:\n{ss}")


@pytest.mark.parametrize("tso", [False, True], ids=["plain-reads", "tso-reads"])
def test_hostile_input_stops_neither_server_nor_client(
    netns_pair: NetnsPair, tmp_path: Path, tso: bool
) -> None:
    pair = netns_pair
    pair.env["TUNNEL_TSO"] = "1" if tso else "0"
    server_conf, client_conf, net, _status = _write_configs(pair, tmp_path)
    server = _spawn(pair, pair.ns_a, "server", server_conf)
    assert _wait_log(pair, server, "Initialization Sequence Completed", START_TIMEOUT), (
        pair.log(server))
    assert ("TSO reads on" in pair.log(server)) == tso, pair.log(server)
    _hostile(pair, pair.ns_b, str(pair.addr_a), PORT)  # before any client exists
    assert server.poll() is None, pair.log(server)

    client = _spawn(pair, pair.ns_b, "client", client_conf)
    assert _wait_log(pair, client, "Initialization Sequence Completed", START_TIMEOUT), (
        pair.log(server) + pair.log(client))
    match = _CLIENT_ADDRESS.search(pair.log(client))
    assert match, pair.log(client)
    client_vip = match.group(1)
    server_vip = str(net[1])
    assert ("TSO reads on" in pair.log(client)) == tso, pair.log(client)
    assert pair.ping(pair.ns_b, server_vip)

    _hostile(pair, pair.ns_b, str(pair.addr_a), PORT)  # with a session up
    _hostile(pair, pair.ns_a, str(pair.addr_b), _udp_port_of(pair, pair.ns_b, client.pid))
    # Odd packets into both TUN devices: empty ICMP, fragments of a 9000-byte ping, packets
    # for addresses of the pool nobody has (no route on the server).
    for size in ("0", "9000"):
        pair.run(pair.ns_a, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-s", size,
                 client_vip, timeout=10)
        pair.run(pair.ns_b, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-s", size,
                 server_vip, timeout=10)
    pair.run(pair.ns_a, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", str(net[200]),
             timeout=10)

    assert server.poll() is None, pair.log(server)
    assert client.poll() is None, pair.log(client)
    assert pair.ping(pair.ns_b, server_vip, count=5), pair.log(server) + pair.log(client)
    assert pair.ping(pair.ns_a, client_vip, count=3)
    for proc in (server, client):
        log = pair.log(proc)
        assert not re.search(r"internal error|Traceback", log), log
