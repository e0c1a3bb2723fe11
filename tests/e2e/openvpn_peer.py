"""Tunnel peers for end-to-end tests: the stock `openvpn` binary, or ours, in a test namespace.

Both kinds read the *same* OpenVPN config text (written by `server_config` / `client_config`
into the test's directory), so an interop test compares two implementations of one config, not
two configs. A peer is started with `start_peer` (a context manager: whatever happens in the
block, the process group is stopped on exit, and the NetnsPair kills anything left in its
namespaces on close), and `PeerProcess.wait_up` waits for OpenVPN's
"Initialization Sequence Completed" line with a timeout, failing with the log's tail when the
peer exits or never gets there.

Stock openvpn flushes every log line, and the harness runs our side with PYTHONUNBUFFERED, so
a log read here is complete up to the moment it is read.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns import NetnsPair, wait_for
from tests.tools import require_tool

INIT_DONE = "Initialization Sequence Completed"
TUNNEL_PORT = 1194
UP_TIMEOUT = 45.0  # seconds: TLS + push normally take < 2 s; 45 leaves room for one retry
LOG_TAIL_LINES = 60

Role = str  # "server" | "client"
Kind = str  # "stock" | "ours"


class PeerFailed(AssertionError):
    """A peer exited early or did not come up in time; the message carries its log tail."""


@dataclass(frozen=True)
class Pki:
    """File paths of a PKI made by `tunnel.pki.generate_pki` (CN "server" and "client")."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def cert(self, role: Role) -> Path:
        return self.directory / f"{role}.crt"

    def key(self, role: Role) -> Path:
        return self.directory / f"{role}.key"


def make_pki(directory: Path) -> Pki:
    from tunnel.pki import generate_pki

    generate_pki(directory, server_cn="server", client_cns=["client"], days=2)
    return Pki(directory)


# -- configs ---------------------------------------------------------------------------------


def server_config(
    *, pki: Pki, local: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network, cipher: str,
    port: int = TUNNEL_PORT, verb: int = 4, extra: Sequence[str] = (),
) -> str:
    """OPENVPN-WIRE.md section 13 / ANCHOR-RESULTS server, on one explicit address."""
    lines = [
        "proto udp4",
        f"local {local}",
        f"port {port}",
        "dev tun",
        "topology subnet",
        f"server {subnet.network_address} {subnet.netmask}",
        f"ca {pki.ca}",
        f"cert {pki.cert('server')}",
        f"key {pki.key('server')}",
        "dh none",
        "keepalive 10 60",
        f"data-ciphers {cipher}",
        "disable-dco",
        f"verb {verb}",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def client_config(
    *, pki: Pki, remote: ipaddress.IPv4Address, cipher: str, port: int = TUNNEL_PORT,
    verb: int = 4, extra: Sequence[str] = (),
) -> str:
    """OPENVPN-WIRE.md section 13 / ANCHOR-RESULTS client."""
    lines = [
        "client",
        "proto udp4",
        f"remote {remote} {port}",
        "nobind",
        "dev tun",
        f"ca {pki.ca}",
        f"cert {pki.cert('client')}",
        f"key {pki.key('client')}",
        "remote-cert-tls server",
        f"data-ciphers {cipher}",
        "disable-dco",
        f"verb {verb}",
        *extra,
    ]
    return "\n".join(lines) + "\n"


# -- processes -------------------------------------------------------------------------------


def peer_argv(kind: Kind, role: Role, config: Path, extra: Sequence[str] = ()) -> list[str]:
    if kind == "stock":
        openvpn = shutil.which("openvpn")
        if openvpn is None:
            raise PeerFailed("the stock openvpn binary is not installed")
        # An absolute path: `ip netns exec` runs it with the test's PATH, but be explicit.
        return [openvpn, "--config", str(config)]
    if kind == "ours":
        return [sys.executable, "-m", "tunnel", role, "--config", str(config), *extra]
    raise ValueError(f"unknown peer kind {kind!r}")


@dataclass
class PeerProcess:
    pair: NetnsPair
    ns: str
    label: str  # e.g. "stock-server", used in messages and file names
    proc: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path
    started: float = field(default_factory=time.monotonic)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"{self.label} ({state}), log {self.log_path}:\n{self.tail()}"

    def wait_up(self, timeout: float = UP_TIMEOUT) -> float:
        """Wait for INIT_DONE in the log; seconds it took since start. PeerFailed otherwise."""
        wait_for(lambda: INIT_DONE in self.log() or self.proc.poll() is not None,
                 timeout, interval=0.1)
        if INIT_DONE in self.log():
            return time.monotonic() - self.started
        returncode = self.proc.poll()
        why = f"exited ({returncode})" if returncode is not None else f"not up in {timeout:.0f} s"
        raise PeerFailed(f"{self.label} {why}: {self.describe()}")

    def assert_running(self) -> None:
        if self.proc.poll() is not None:
            raise PeerFailed(f"{self.label} died: {self.describe()}")

    def stop(self) -> int:
        return self.pair.stop(self.proc)


@contextlib.contextmanager
def start_peer(
    pair: NetnsPair, ns: str, *, kind: Kind, role: Role, config_text: str, workdir: Path,
    args: Sequence[str] = (),
) -> Iterator[PeerProcess]:
    """Write the config, start the peer in `ns`; it is stopped when the block exits.
    `args`: more command-line arguments for ours (e.g. `--workers 2`)."""
    label = f"{kind}-{role}"
    config_path = workdir / f"{label}.conf"
    config_path.write_text(config_text)
    log_path = workdir / f"{label}.log"
    proc = pair.spawn(ns, *peer_argv(kind, role, config_path, args), log_path=log_path)
    peer = PeerProcess(pair, ns, label, proc, log_path, config_path)
    try:
        yield peer
    finally:
        peer.stop()


# -- probes through the tunnel ---------------------------------------------------------------


def tun_address(pair: NetnsPair, ns: str, subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The address inside `subnet` that some device in `ns` carries (the pushed ifconfig)."""
    out = pair.run(ns, "ip", "-j", "-4", "addr", "show", check=True).stdout
    for link in json.loads(out):
        for info in link.get("addr_info", []):
            address = ipaddress.IPv4Address(info["local"])
            if address in subnet:
                return address
    raise PeerFailed(f"no address in {subnet} in {ns}: {out}")


@dataclass(frozen=True)
class PingResult:
    ok: bool
    sent: int
    received: int
    rtt_avg_ms: float | None
    output: str


_RTT = re.compile(r"= [\d.]+/([\d.]+)/[\d.]+/[\d.]+ ms")
_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping(pair: NetnsPair, ns: str, address: ipaddress.IPv4Address, count: int = 5) -> PingResult:
    """`count` echo requests, 0.2 s apart, each waited for at most 2 s; the summary."""
    require_tool("ping")  # a test that forgot its `ping` marker still skips/fails clearly
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2", "-w", str(count + 5),
            str(address)]
    result = pair.run(ns, *argv, timeout=count + 15)
    counts = _COUNTS.search(result.stdout)
    rtt = _RTT.search(result.stdout)
    return PingResult(
        ok=result.returncode == 0,
        sent=int(counts.group(1)) if counts else 0,
        received=int(counts.group(2)) if counts else 0,
        rtt_avg_ms=float(rtt.group(1)) if rtt else None,
        output=result.stdout + result.stderr,
    )


@dataclass(frozen=True)
class IperfResult:
    mbit_per_s: float  # end.sum_received: what arrived, not what was sent
    seconds: float
    interval_bytes: list[int]  # bytes per reporting interval (1 s), sender side
    retransmits: int


IPERF_PORT = 5201


@contextlib.contextmanager
def iperf3_server(
    pair: NetnsPair, ns: str, bind: ipaddress.IPv4Address, workdir: Path, port: int = IPERF_PORT,
) -> Iterator[subprocess.Popen[bytes]]:
    """A one-off iperf3 server (`-1`: it exits after one test) bound to `bind` in `ns`."""
    require_tool("iperf3")
    log_path = workdir / f"iperf3-server-{ns}.log"
    proc = pair.spawn(ns, "iperf3", "-s", "-1", "-B", str(bind), "-p", str(port),
                      log_path=log_path)
    try:
        def listening() -> bool:
            out = pair.run(ns, "ss", "-Hltn", f"sport = :{port}").stdout
            return bool(out.strip()) or proc.poll() is not None

        wait_for(listening, 10, interval=0.1)
        if proc.poll() is not None:
            raise PeerFailed(f"iperf3 server exited: {log_path.read_text(errors='replace')}")
        yield proc
    finally:
        pair.stop(proc)


def iperf3_client(
    pair: NetnsPair, ns: str, server: ipaddress.IPv4Address, seconds: int,
    port: int = IPERF_PORT,
) -> IperfResult:
    """One TCP run of `seconds` from `ns` to `server`; raises with iperf3's output on failure."""
    require_tool("iperf3")
    argv = ["iperf3", "-c", str(server), "-p", str(port), "-t", str(seconds), "-i", "1",
            "--connect-timeout", "5000", "-J"]
    # Bounded: a stalled tunnel makes iperf3 hang in its final exchange, so kill it well after
    # the run should have ended.
    try:
        result = pair.run(ns, *argv, timeout=seconds + 30)
    except subprocess.TimeoutExpired as exc:
        raise PeerFailed(f"iperf3 client did not finish within {seconds + 30} s") from exc
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise PeerFailed(f"iperf3 gave no JSON (rc {result.returncode}): "
                         f"{result.stdout[-2000:]}{result.stderr[-2000:]}") from exc
    if result.returncode != 0 or "error" in report:
        raise PeerFailed(f"iperf3 failed (rc {result.returncode}): {report.get('error')}")
    end = report["end"]
    return IperfResult(
        mbit_per_s=end["sum_received"]["bits_per_second"] / 1e6,
        seconds=end["sum_received"]["seconds"],
        interval_bytes=[int(interval["sum"]["bytes"]) for interval in report["intervals"]],
        retransmits=int(end["sum_sent"].get("retransmits", 0)),
    )


# -- what the data channel looks like on the wire ---------------------------------------------

ETH_P_ALL = 0x0003  # not ETH_P_IP: a socket for one protocol only sees received packets
ETH_P_IP = 0x0800
P_DATA_V1 = 6
P_DATA_V2 = 9
CAPTURE_MAX_PACKETS = 10_000  # bound on what one capture reads back
TO_SERVER = "to-server"
TO_CLIENT = "to-client"


@dataclass(frozen=True)
class DataCapture:
    """Data packets seen on the underlay, per direction: Counter of (opcode, key_id)."""

    to_server: Counter[tuple[int, int]]
    to_client: Counter[tuple[int, int]]

    def key_ids(self, direction: str) -> set[int]:
        seen = self.to_server if direction == TO_SERVER else self.to_client
        return {key_id for _, key_id in seen}

    def opcodes(self, direction: str) -> set[int]:
        seen = self.to_server if direction == TO_SERVER else self.to_client
        return {opcode for opcode, _ in seen}


def capture_data_packets(
    pair: NetnsPair, ns: str, ifname: str, action: Callable[[], object],
    port: int = TUNNEL_PORT,
) -> DataCapture:
    """Run `action` while recording the first byte of every OpenVPN data packet on `ifname`.

    No tcpdump on the test machines: an AF_PACKET socket made inside `ns` (a socket belongs to
    the namespace it was created in) queues IPv4 packets of that device in the kernel while
    `action` runs; they are parsed afterwards. Meant for low-rate traffic such as pings: at
    iperf3 rates the socket buffer overflows and the kernel drops what does not fit.
    """
    with pair.entered(ns):
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    with sniffer:
        sniffer.bind((ifname, ETH_P_ALL))
        action()
        sniffer.setblocking(False)
        to_server: Counter[tuple[int, int]] = Counter()
        to_client: Counter[tuple[int, int]] = Counter()
        for _ in range(CAPTURE_MAX_PACKETS):
            try:
                packet, (_, ethertype, *_) = sniffer.recvfrom(65535)
            except BlockingIOError:
                break
            if ethertype != ETH_P_IP:
                continue
            header_len = (packet[0] & 0x0F) * 4
            if len(packet) < header_len + 9 or packet[9] != socket.IPPROTO_UDP:
                continue
            src_port, dst_port = struct.unpack_from("!HH", packet, header_len)
            first = packet[header_len + 8]
            opcode, key_id = first >> 3, first & 0x07
            if opcode not in (P_DATA_V1, P_DATA_V2):
                continue
            if dst_port == port:
                to_server[opcode, key_id] += 1
            elif src_port == port:
                to_client[opcode, key_id] += 1
    return DataCapture(to_server, to_client)
