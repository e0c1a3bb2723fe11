"""Our client against our server: `python -m tunnel server/client --config`, real TUN devices.

The server runs in one namespace of tests/netns.py's pair, the client in the other; the tunnel
runs over their veth link, and ping/iperf3 run through it. Every wait is bounded, every process
and both namespaces go away when a test ends (the `netns_pair` fixture), also on failure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netns import NetnsPair, wait_for
from tunnel.pki import generate_pki
from tunnel.protocol.aead import NATIVE_AEAD

pytestmark = [pytest.mark.root, pytest.mark.ping]

PORT = 1194
START_TIMEOUT = 30.0  # handshake + push + device setup; seconds in practice
_RTT = re.compile(r"= [\d.]+/([\d.]+)/")
_CLIENT_ADDRESS = re.compile(r"net_addr_v4_add: ([\d.]+)/\d+ dev ")


@dataclass
class Tunnel:
    pair: NetnsPair
    server: subprocess.Popen[bytes]
    client: subprocess.Popen[bytes]
    server_vip: ipaddress.IPv4Address
    client_vip: ipaddress.IPv4Address
    server_dev: str
    client_dev: str
    status_file: Path

    def server_log(self) -> str:
        return self.pair.log(self.server)

    def client_log(self) -> str:
        return self.pair.log(self.client)

    def logs(self) -> str:
        return f"--- server log ---\n{self.server_log()}\n--- client log ---\n{self.client_log()}"


def _write_configs(
    pair: NetnsPair, tmp: Path, *, server_extra: str = "", client_extra: str = "",
    link6: bool = False,
) -> tuple[Path, Path, ipaddress.IPv4Network, Path]:
    pki = generate_pki(tmp / "pki")
    client_cert, client_key = pki.clients["client"]
    net = pair.new_subnet()
    status = tmp / "server.status"
    proto, server_addr = ("udp6", pair.addr6_a) if link6 else ("udp", pair.addr_a)
    server_conf = tmp / "server.conf"
    server_conf.write_text(f"""\
dev {pair.ifname("s")}
dev-type tun
proto {proto}
local {server_addr}
port {PORT}
topology subnet
server {net.network_address} {net.netmask}
ca {pki.ca_cert}
cert {pki.server_cert}
key {pki.server_key}
dh none
keepalive 10 60
data-ciphers AES-256-GCM:CHACHA20-POLY1305
status {status} 1
status-version 2
persist-key
verb 4
{server_extra}
""")
    client_conf = tmp / "client.conf"
    client_conf.write_text(f"""\
client
dev {pair.ifname("c")}
dev-type tun
proto {proto}
remote {server_addr} {PORT}
nobind
ca {pki.ca_cert}
cert {client_cert}
key {client_key}
remote-cert-tls server
data-ciphers AES-256-GCM:CHACHA20-POLY1305
explicit-exit-notify 1
verb 4
{client_extra}
""")
    return server_conf, client_conf, net, status


def _spawn(
    pair: NetnsPair, ns: str, role: str, conf: Path, log_name: str | None = None,
    args: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    return pair.spawn(
        ns, *pair.python_argv(), "-m", "tunnel", role, "--config", str(conf), *args,
        log_path=pair.workdir / (log_name or f"{role}.log"),
    )


def _wait_log(pair: NetnsPair, proc: subprocess.Popen[bytes], text: str, timeout: float) -> bool:
    return wait_for(lambda: text in pair.log(proc) or proc.poll() is not None, timeout) and (
        text in pair.log(proc)
    )


def _start_tunnel(pair: NetnsPair, tmp: Path, server_args: tuple[str, ...] = (),
                  **extra: str | bool) -> Tunnel:
    server_conf, client_conf, net, status = _write_configs(pair, tmp, **extra)  # type: ignore[arg-type]
    server = _spawn(pair, pair.ns_a, "server", server_conf, args=server_args)
    assert _wait_log(pair, server, "Initialization Sequence Completed", START_TIMEOUT), (
        pair.log(server)
    )
    client = _spawn(pair, pair.ns_b, "client", client_conf)
    ok = _wait_log(pair, client, "Initialization Sequence Completed", START_TIMEOUT)
    tunnel = Tunnel(pair, server, client, net[1], net[1], pair.ifname("s"), pair.ifname("c"),
                    status)
    assert ok, tunnel.logs()
    match = _CLIENT_ADDRESS.search(tunnel.client_log())
    assert match, tunnel.logs()
    tunnel.client_vip = ipaddress.IPv4Address(match.group(1))
    assert tunnel.client_vip in net and tunnel.client_vip != tunnel.server_vip
    return tunnel


def _ping_rtt(
    pair: NetnsPair, ns: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address, count: int = 5,
    device: str | None = None,
) -> float:
    """Average RTT in ms of `count` pings that must all be answered."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2", "-w", "10", str(addr)]
    if device is not None:
        argv[1:1] = ["-I", device]
    result = pair.run(ns, *argv, timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr
    match = _RTT.search(result.stdout)
    assert match, result.stdout
    return float(match.group(1))


def _iperf3(
    pair: NetnsPair, server_vip: ipaddress.IPv4Address, seconds: int, *, reverse: bool = False
) -> dict[str, object]:
    """One iperf3 TCP run from the client namespace to an iperf3 server in the server's."""
    log = pair.workdir / f"iperf3-server-{len(list(pair.workdir.glob('iperf3-*')))}.log"
    server = pair.spawn(pair.ns_a, "iperf3", "-s", "-B", str(server_vip), "-p", "5201",
                        log_path=log)
    try:
        def listening() -> bool:
            ss = pair.run(pair.ns_a, "ss", "-Hltn", "sport = :5201", timeout=5)
            return bool(ss.stdout.strip()) or server.poll() is not None

        assert wait_for(listening, 10) and server.poll() is None, pair.log(server)
        argv = ["iperf3", "-c", str(server_vip), "-p", "5201", "-t", str(seconds), "-J",
                "--connect-timeout", "5000"]
        if reverse:
            argv.append("-R")
        result = pair.run(pair.ns_b, *argv, timeout=seconds + 30)
        report: dict[str, object] = json.loads(result.stdout)
        assert result.returncode == 0 and "error" not in report, result.stdout[-2000:]
        return report
    finally:
        pair.stop(server)


def _mbit(report: dict[str, object]) -> float:
    end = report["end"]
    assert isinstance(end, dict)
    return float(end["sum_received"]["bits_per_second"]) / 1e6


def _interval_rates(report: dict[str, object]) -> list[float]:
    intervals = report["intervals"]
    assert isinstance(intervals, list)
    return [float(i["sum"]["bits_per_second"]) / 1e6 for i in intervals]


def _link_gone(pair: NetnsPair, ns: str, name: str) -> bool:
    return pair.run(ns, "ip", "link", "show", "dev", name).returncode != 0


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.iperf3
def test_ping_both_ways_iperf3_status_and_clean_exit(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    pair = netns_pair
    pair.env["TUNNEL_TSO"] = "0"  # plain reads here; the TSO test below runs the default
    routed = pair.new_subnet()
    net6 = pair.new_subnet6()
    pushes = (
        f'push "route {routed.network_address} {routed.netmask}"\n'
        # One client here, so one fixed IPv6 address pushed to all clients is enough to see
        # the client configure a pushed ifconfig-ipv6.
        f'push "ifconfig-ipv6 {net6[2]}/64 {net6[1]}"\n'
    )
    tunnel = _start_tunnel(pair, tmp_path, server_extra="explicit-exit-notify 1\n" + pushes)
    for log in (tunnel.server_log(), tunnel.client_log()):
        assert "TSO reads on" not in log, log  # TUNNEL_TSO=0: plain reads
    route = pair.run(pair.ns_b, "ip", "route", "show", str(routed)).stdout
    assert f"via {tunnel.server_vip} dev {tunnel.client_dev}" in route, route
    addr6 = pair.run(pair.ns_b, "ip", "-6", "addr", "show", "dev", tunnel.client_dev).stdout
    assert f"{net6[2]}/64" in addr6, addr6

    rtt_to_server = _ping_rtt(pair, pair.ns_b, tunnel.server_vip)
    rtt_to_client = _ping_rtt(pair, pair.ns_a, tunnel.client_vip)
    print(f"\nping through the tunnel: client->server avg {rtt_to_server:.3f} ms, "
          f"server->client avg {rtt_to_client:.3f} ms")

    up = _iperf3(pair, tunnel.server_vip, 5)
    down = _iperf3(pair, tunnel.server_vip, 5, reverse=True)
    print(f"iperf3 TCP 5 s: client->server {_mbit(up):.1f} Mbit/s, "
          f"server->client {_mbit(down):.1f} Mbit/s")
    assert _mbit(up) > 1 and _mbit(down) > 1, tunnel.logs()

    server_log, client_log = tunnel.server_log(), tunnel.client_log()
    assert "Peer Connection Initiated with [AF_INET]" in server_log, server_log
    assert "Peer Connection Initiated with [AF_INET]" in client_log, client_log
    assert "Data Channel: cipher 'AES-256-GCM'" in client_log, client_log
    if NATIVE_AEAD is not None:  # (CI builds it: tests/tools.py native_aead)
        # The pings above went through the lone-packet lanes (tunnel/io/lane.py).
        assert "lone packets take the native lane" in client_log, client_log
        assert "lone packets take the native lane" in server_log, server_log
    assert "UDPv4 link local (bound): [AF_INET]" in server_log, server_log
    assert f"TUN/TAP device {tunnel.server_dev} opened" in server_log, server_log
    # persist-key has no effect here, and the log says so rather than nothing.
    assert "option 'persist-key' accepted, no effect" in server_log, server_log

    # The status file (rewritten every second) lists the client with its traffic.
    def client_row() -> list[str] | None:
        text = tunnel.status_file.read_text() if tunnel.status_file.exists() else ""
        for line in text.splitlines():
            fields = line.split(",")
            if fields[0] == "CLIENT_LIST" and int(fields[5]) > 1_000_000:
                return fields
        return None

    assert wait_for(client_row, 5), tunnel.status_file.read_text()
    row = client_row()
    assert row is not None
    assert row[1] == "client" and row[3] == str(tunnel.client_vip) and row[12] == "AES-256-GCM"
    status = tunnel.status_file.read_text()
    assert status.startswith("TITLE,OpenVPN-compatible tunnel"), status
    assert "\nARENA_STATS," in status and status.endswith("END\n")
    pool = next(line for line in status.splitlines() if line.startswith("POOL_STATS,"))
    _, size, in_use, _high, _acq, _rel, exhaustions = pool.split(",")
    assert int(size) > 0 and int(in_use) == 0 and int(exhaustions) == 0, pool  # no leak
    # The driver's GSO/GRO/coalescing runs: pool blocks, all held, none ever short.
    runs = next(line for line in status.splitlines() if line.startswith("RUN_POOL_STATS,"))
    _, size, in_use, _high, block, exhaustions = runs.split(",")
    # (2 or 3 per driver: GSO, GRO, and coalescing with a virtio-net TUN; summed over workers)
    assert int(size) >= 2 and in_use == size and int(block) >= 65536, runs
    assert int(exhaustions) == 0, runs
    # The client's connection: its arena was taken by the iterations that touched it and is
    # empty between them.
    memory = next(line for line in status.splitlines() if line.startswith("CLIENT_MEMORY,"))
    fields = memory.split(",")
    assert fields[1] == "client" and int(fields[4]) > 0 and fields[8] == "0", memory

    # SIGTERM to the client: it tells the server (explicit-exit-notify), removes its device
    # and exits 0; the server drops the client at once instead of after ping-restart.
    assert pair.stop(tunnel.client, grace=10) == 0, tunnel.logs()
    assert "SIGTERM[hard,] received, process exiting" in tunnel.client_log()
    assert _wait_log(pair, tunnel.server, "client-instance exiting", 5), tunnel.logs()
    assert _link_gone(pair, pair.ns_b, tunnel.client_dev)
    assert pair.stop(tunnel.server, grace=10) == 0, tunnel.logs()
    assert _link_gone(pair, pair.ns_a, tunnel.server_dev)


@pytest.mark.iperf3
def test_tso_reads_carry_tcp_both_ways(netns_pair: NetnsPair, tmp_path: Path) -> None:
    """TSO reads (the default where the extension is built, else TUNNEL_TSO=1): both TUNs
    hand over 64 KB super-packets and partial checksums, the server's two queues too (two
    workers); what leaves is cut or sealed in batch and completed (tunnel/io/tso.py,
    tso_rows.py), so TCP runs both ways without stalling and ping still answers (a wrong
    checksum would be dropped by the receiving kernel); the lanes read first
    (tunnel/io/lane.py) and hand each super-packet to that path."""
    pair = netns_pair
    if NATIVE_AEAD is None:  # (CI builds it: tests/tools.py native_aead)
        pair.env["TUNNEL_TSO"] = "1"
    tunnel = _start_tunnel(pair, tmp_path, server_args=("--workers", "2"))
    for log in (tunnel.server_log(), tunnel.client_log()):
        assert "TSO reads on" in log, log
        if NATIVE_AEAD is not None:
            # The lone-packet lane runs over TSO devices too (it hands super-packets over).
            assert "lone packets take the native lane" in log, log
    _ping_rtt(pair, pair.ns_b, tunnel.server_vip)
    up = _iperf3(pair, tunnel.server_vip, 3)
    down = _iperf3(pair, tunnel.server_vip, 3, reverse=True)
    print(f"\nTSO reads, iperf3 TCP 3 s: client->server {_mbit(up):.1f} Mbit/s, "
          f"server->client {_mbit(down):.1f} Mbit/s")
    assert _mbit(up) > 1 and _mbit(down) > 1, tunnel.logs()


@pytest.mark.iperf3
def test_iperf3_across_two_renegotiations_does_not_stall(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    pair = netns_pair
    # The server also gives up root once its device and socket are open: renegotiations and
    # the status file (rewritten in place then) must not need it.
    tunnel = _start_tunnel(pair, tmp_path, server_extra="reneg-sec 10\nuser nobody\ngroup nogroup")
    uid_line = next(line for line in Path(f"/proc/{tunnel.server.pid}/status").read_text()
                    .splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["65534"] * 4, uid_line
    # The server renegotiates 9..10 s after each key became active (10 % jitter), so a 24 s
    # run starting a few seconds after the first key spans at least two renegotiations.
    report = _iperf3(pair, tunnel.server_vip, 24)
    rates = _interval_rates(report)
    renegotiations = tunnel.server_log().count("(renegotiation)")
    print(f"\niperf3 TCP 24 s across {renegotiations} renegotiations: {_mbit(report):.1f} "
          f"Mbit/s, slowest 1 s interval {min(rates):.1f} Mbit/s")
    assert renegotiations >= 2, tunnel.logs()
    assert tunnel.client_log().count("(renegotiation)") >= 2, tunnel.logs()
    # No stall: every one-second interval moved data (a lost key would show as zeros).
    assert len(rates) >= 23 and min(rates) > 0.5, (rates, tunnel.logs())
    assert _ping_rtt(pair, pair.ns_b, tunnel.server_vip, count=3) > 0
    assert "CLIENT_LIST,client," in tunnel.status_file.read_text()
    assert pair.stop(tunnel.server, grace=10) == 0, tunnel.logs()
    assert _link_gone(pair, pair.ns_a, tunnel.server_dev)


def test_client_reconnects_to_a_restarted_server_keeping_its_device(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    pair = netns_pair
    tunnel = _start_tunnel(pair, tmp_path, server_extra="explicit-exit-notify 1",
                           client_extra="persist-tun")
    index = pair.run(pair.ns_b, "cat", f"/sys/class/net/{tunnel.client_dev}/ifindex").stdout

    # The server says RESTART to its clients as it exits; the client reconnects when the
    # server is back, on the same TUN device, and traffic flows again.
    assert pair.stop(tunnel.server, grace=10) == 0, tunnel.logs()
    assert _wait_log(pair, tunnel.client, "restarting", 10), tunnel.logs()
    server = _spawn(pair, pair.ns_a, "server", tmp_path / "server.conf", "server-2.log")
    assert _wait_log(pair, server, "Initialization Sequence Completed", START_TIMEOUT)
    assert wait_for(
        lambda: tunnel.client_log().count("Initialization Sequence Completed") >= 2, 30
    ), pair.log(server) + tunnel.client_log()
    assert "Preserving previous TUN/TAP instance" in tunnel.client_log()
    same = pair.run(pair.ns_b, "cat", f"/sys/class/net/{tunnel.client_dev}/ifindex").stdout
    assert same == index
    assert _ping_rtt(pair, pair.ns_b, tunnel.server_vip, count=3) > 0

    # persist-tun keeps the device across restarts only: at exit (SIGTERM) it goes with its
    # routes, as stock's do_close_tun() does.
    assert pair.stop(tunnel.client, grace=10) == 0, tunnel.logs()
    assert _link_gone(pair, pair.ns_b, tunnel.client_dev), tunnel.client_log()
    # A device that exists before the client (openvpn --mktun, ip tuntap) is attached to, what
    # is on it replaced, and left in place.
    pair.run(pair.ns_b, "ip", "tuntap", "add", "dev", tunnel.client_dev, "mode", "tun",
             check=True)
    pair.run(pair.ns_b, "ip", "addr", "add", "198.18.0.9/24", "dev", tunnel.client_dev,
             check=True)
    index = pair.run(pair.ns_b, "cat", f"/sys/class/net/{tunnel.client_dev}/ifindex").stdout
    client = _spawn(pair, pair.ns_b, "client", tmp_path / "client.conf", "client-2.log")
    assert _wait_log(pair, client, "Initialization Sequence Completed", START_TIMEOUT), (
        pair.log(client)
    )
    again = pair.run(pair.ns_b, "cat", f"/sys/class/net/{tunnel.client_dev}/ifindex").stdout
    assert again == index
    # What was on the device before was replaced, not added to.
    match = _CLIENT_ADDRESS.search(pair.log(client))
    assert match, pair.log(client)
    shown = pair.run(pair.ns_b, "ip", "-4", "-o", "addr", "show", "dev", tunnel.client_dev)
    assert [line.split()[3] for line in shown.stdout.splitlines()] == [
        f"{match.group(1)}/{tunnel.server_vip.max_prefixlen - 8}"
    ], shown.stdout


def test_a_second_sigterm_during_the_shutdown_changes_nothing(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    pair = netns_pair
    # A process group stopped as a whole (systemd, `kill -- -PGID`, a server's workers, whom
    # their supervisor signals again) gets SIGTERM more than once. The down script sends the
    # second one from inside the shutdown, after the loop's handler is gone: the default
    # action there would kill the client (exit -15) before it finished saying goodbye.
    down = tmp_path / "down.sh"
    down.write_text("#!/bin/sh\nkill -TERM $PPID\nsleep 0.2\necho down ran >&2\n")
    down.chmod(0o755)
    tunnel = _start_tunnel(pair, tmp_path, client_extra=f"script-security 2\ndown {down}")
    assert pair.stop(tunnel.client, grace=10) == 0, tunnel.logs()
    assert "down ran" in tunnel.client_log(), tunnel.logs()
    assert _wait_log(pair, tunnel.server, "client-instance exiting", 5), tunnel.logs()


def test_client_restarts_after_ping_restart_on_the_same_device(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    pair = netns_pair
    # keepalive 1 4: the client is pushed ping-restart 4; the server itself waits 8 s.
    tunnel = _start_tunnel(pair, tmp_path, server_extra="keepalive 1 4")
    index = pair.run(pair.ns_b, "cat", f"/sys/class/net/{tunnel.client_dev}/ifindex").stdout
    # The whole server goes silent (its process group: with --workers, the workers too); its
    # sockets stay.
    os.killpg(tunnel.server.pid, signal.SIGSTOP)
    try:
        assert _wait_log(pair, tunnel.client, "Inactivity timeout (--ping-restart)", 10), (
            tunnel.logs()
        )
    finally:
        os.killpg(tunnel.server.pid, signal.SIGCONT)
    assert wait_for(
        lambda: tunnel.client_log().count("Initialization Sequence Completed") >= 2, 40
    ), tunnel.logs()
    same = pair.run(pair.ns_b, "cat", f"/sys/class/net/{tunnel.client_dev}/ifindex").stdout
    assert same == index
    assert _ping_rtt(pair, pair.ns_b, tunnel.server_vip, count=3) > 0


def test_two_clients_over_an_ipv6_link(netns_pair: NetnsPair, tmp_path: Path) -> None:
    pair = netns_pair
    client_status = tmp_path / "client.status"
    tunnel = _start_tunnel(pair, tmp_path, link6=True, server_extra="duplicate-cn",
                           client_extra=f"status {client_status} 1")
    assert "UDPv6 link local (bound): [AF_INET6]" in tunnel.server_log(), tunnel.logs()
    assert "UDPv6 link remote: [AF_INET6]" in tunnel.client_log(), tunnel.logs()

    # A second client with its own device and the same certificate: the server allows it
    # because of duplicate-cn (without it the newer connection would replace the first).
    second_conf = tmp_path / "client2.conf"
    second_dev = pair.ifname("d")
    second_conf.write_text((tmp_path / "client.conf").read_text()
                           .replace(f"dev {tunnel.client_dev}\n", f"dev {second_dev}\n")
                           .replace(str(client_status), str(tmp_path / "client2.status")))
    second = _spawn(pair, pair.ns_b, "client", second_conf, "client2.log")
    assert _wait_log(pair, second, "Initialization Sequence Completed", START_TIMEOUT), (
        pair.log(second)
    )
    match = _CLIENT_ADDRESS.search(pair.log(second))
    assert match, pair.log(second)
    second_vip = ipaddress.IPv4Address(match.group(1))
    assert second_vip != tunnel.client_vip

    # Both clients share one namespace and one subnet, so each pings out of its own device
    # (otherwise the kernel would send the second one's traffic into the first tunnel).
    assert _ping_rtt(pair, pair.ns_b, tunnel.server_vip, count=3, device=tunnel.client_dev) > 0
    assert _ping_rtt(pair, pair.ns_b, tunnel.server_vip, count=3, device=second_dev) > 0

    def rows() -> list[str]:
        text = tunnel.status_file.read_text() if tunnel.status_file.exists() else ""
        return [line for line in text.splitlines() if line.startswith("CLIENT_LIST,")]

    assert wait_for(lambda: len(rows()) == 2, 5), tunnel.status_file.read_text()
    assert {row.split(",")[3] for row in rows()} == {str(tunnel.client_vip), str(second_vip)}
    assert all(row.split(",")[2].startswith(str(pair.addr6_b)) for row in rows()), rows()

    # A client's status file is OpenVPN's STATISTICS block. It is rewritten every second
    # (`status FILE 1`), so the copy on disk may predate the pings: wait for one written after.
    def client_stats() -> dict[str, str]:
        text = client_status.read_text() if client_status.exists() else ""
        return dict(line.split(",", 1) for line in text.splitlines() if "," in line)

    def counted() -> bool:
        stats = client_stats()
        return (int(stats.get("TUN/TAP write bytes", "0")) > 0
                and int(stats.get("TCP/UDP read bytes", "0")) > 0)

    assert wait_for(counted, 5), client_status.read_text()

    assert pair.stop(second, grace=10) == 0, pair.log(second)
    assert wait_for(lambda: len(rows()) == 1, 5), tunnel.status_file.read_text()


def test_client_exits_1_when_the_server_refuses_it(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    pair = netns_pair
    server_conf, client_conf, _, _ = _write_configs(
        pair, tmp_path, server_extra="data-ciphers AES-256-GCM",
        client_extra="data-ciphers CHACHA20-POLY1305",
    )
    server = _spawn(pair, pair.ns_a, "server", server_conf)
    assert _wait_log(pair, server, "Initialization Sequence Completed", START_TIMEOUT)
    client = _spawn(pair, pair.ns_b, "client", client_conf)
    # No shared cipher: the server answers the push request with AUTH_FAILED, and a client
    # told that does not retry (as a stock client without auth-retry).
    try:
        assert client.wait(START_TIMEOUT) == 1, pair.log(client)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the refused client did not exit:\n{pair.log(client)}")
    log = pair.log(client)
    assert "AUTH_FAILED" in log and "Initialization Sequence Completed" not in log, log
    assert _link_gone(pair, pair.ns_b, pair.ifname("c"))
    assert "no shared cipher): sending AUTH_FAILED" in pair.log(server), pair.log(server)


@pytest.mark.root
def test_ipv6_inside_the_tunnel_with_server_ipv6(netns_pair: NetnsPair, tmp_path: Path) -> None:
    """`server-ipv6`: the client gets an IPv6 address pushed, and ping6 works both ways."""
    pair = netns_pair
    prefix = pair.new_subnet6()
    server6 = prefix[1]
    tunnel = _start_tunnel(pair, tmp_path, server_extra=f"server-ipv6 {prefix}")
    match = re.search(r"ifconfig-ipv6 ([0-9a-f:]+)", tunnel.client_log())
    assert match, tunnel.logs()
    client6 = ipaddress.IPv6Address(match.group(1))
    assert client6 in prefix and client6 != server6
    # IPv6 DAD on a fresh address can take a moment: wait until a ping goes through.
    assert wait_for(lambda: pair.ping(pair.ns_b, str(server6), count=1, timeout=2), 15), (
        tunnel.logs()
    )
    assert _ping_rtt(pair, pair.ns_b, server6) > 0
    assert _ping_rtt(pair, pair.ns_a, client6) > 0
