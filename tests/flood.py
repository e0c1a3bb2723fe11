"""Bounded floods against a server in a namespace: ours (`tunnel server`) or stock `openvpn`,
with the same config file. Used by tests/e2e/test_flood.py (seconds) and scripts/flood (the
long versions, whose figures go in the report).

The generator runs in the other namespace of a tests/netns.py pair:
  stalled  N clients that do the three-way cookie exchange (reset, answer, P_ACK_V1 echo) and
           then say nothing: half-open sessions the server keeps until hand-window;
  arrivals N clients at R per second doing the same, retrying their reset every second until
           answered: the time each waited for its answer (connect-freq-initial and its refund);
  garbage  G random datagrams as fast as one socket sends them.
The figures of a server: RSS (VmRSS), CPU seconds (utime+stime), kernel UDP receive-buffer
drops in its namespace, and a legitimate client's (the stock `openvpn` client, the same for
both servers) time from start to "Initialization Sequence Completed".

    python -m tests.flood stall HOST PORT COUNT RATE HOLD    # the generator side (used inside)
    python -m tests.flood arrive HOST PORT COUNT RATE TIMEOUT
    python -m tests.flood garbage HOST PORT COUNT
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunnel.protocol.codec import ControlPacket, build_control, parse_control
from tunnel.protocol.constants import Opcode

if TYPE_CHECKING:  # the generator side runs without pytest's world
    from tests.netns import NetnsPair

# -- the generator (runs in the client namespace) ---------------------------------------------


def _reset(sid: bytes) -> bytes:
    return build_control(ControlPacket(
        opcode=Opcode.P_CONTROL_HARD_RESET_CLIENT_V2, key_id=0, session_id=sid, acks=(),
        remote_session_id=None, packet_id=0))


def _echo(sid: bytes, server_sid: bytes) -> bytes:
    return build_control(ControlPacket(
        opcode=Opcode.P_ACK_V1, key_id=0, session_id=sid, acks=(0,),
        remote_session_id=server_sid, packet_id=None))


def cookie_clients(host: str, port: int, count: int, rate: float, timeout: float,
                   retry: float = 1.0) -> tuple[list[socket.socket], list[float | None]]:
    """`count` clients started at `rate`/s, each resending its reset every `retry` s until
    answered, then echoing the cookie. (their sockets, kept open; seconds each waited)"""
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    waited: list[float | None] = [None] * count
    sids: list[bytes] = []
    started: list[float] = []
    next_try: list[float] = []
    begin = time.monotonic()
    pending = set()
    while True:
        now = time.monotonic()
        while len(socks) < count and now >= begin + len(socks) / rate:
            i = len(socks)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((host, port))
            sid = os.urandom(8)
            socks.append(sock)
            sids.append(sid)
            started.append(now)
            next_try.append(now + retry)
            sock.send(_reset(sid))
            sel.register(sock, selectors.EVENT_READ, i)
            pending.add(i)
        if not pending and len(socks) == count:
            break
        if now - begin > count / rate + timeout:
            break
        for key, _ in sel.select(0.02):
            i = key.data
            try:
                data = socks[i].recv(2048)
            except OSError:
                continue
            answer = Opcode.P_CONTROL_HARD_RESET_SERVER_V2
            if i not in pending or not data or data[0] >> 3 != answer:
                continue
            server_sid = parse_control(data).session_id
            socks[i].send(_echo(sids[i], server_sid))
            waited[i] = time.monotonic() - started[i]
            pending.discard(i)
            sel.unregister(socks[i])
        now = time.monotonic()
        for i in list(pending):
            if now >= next_try[i]:
                next_try[i] = now + retry
                with contextlib.suppress(OSError):
                    socks[i].send(_reset(sids[i]))
    sel.close()
    return socks, waited


def garbage(host: str, port: int, count: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    head = bytes([Opcode.P_CONTROL_V1 << 3])
    blobs = [head + os.urandom(40 + i % 200) for i in range(256)]
    sent = 0
    for i in range(count):
        try:
            sock.sendto(blobs[i & 255], (host, port))
            sent += 1
        except OSError:
            time.sleep(0.0005)  # the socket buffer is full: a sender that keeps trying
    sock.close()
    return sent


def main(argv: list[str]) -> int:
    mode, host, port = argv[0], argv[1], int(argv[2])
    if mode == "stall":
        count, rate, hold = int(argv[3]), float(argv[4]), float(argv[5])
        socks, waited = cookie_clients(host, port, count, rate, timeout=10)
        answered = sum(w is not None for w in waited)
        print(json.dumps({"answered": answered}), flush=True)
        time.sleep(hold)  # the stalled sessions' sockets stay open (no ICMP back)
        for s in socks:
            s.close()
    elif mode == "arrive":
        count, rate, timeout = int(argv[3]), float(argv[4]), float(argv[5])
        socks, waited = cookie_clients(host, port, count, rate, timeout=timeout)
        print(json.dumps({"waited": waited}), flush=True)
        for s in socks:
            s.close()
    elif mode == "garbage":
        print(json.dumps({"sent": garbage(host, port, int(argv[3]))}), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


# -- the orchestration (test process, root) ----------------------------------------------------


@dataclass
class Figures:
    kind: str
    values: dict[str, float | str] = field(default_factory=dict)

    def line(self) -> str:
        parts = [f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in self.values.items()]
        return f"{self.kind:>7}: " + "  ".join(parts)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: a server with `--workers` is a supervisor and its workers,
    and what a flood costs it is in the workers."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = [pid]
    for member in tree:
        tree.extend(child for child, parent in parents.items() if parent == member)
    return tree


def rss_mb(pid: int) -> float:
    """VmRSS of the process and its descendants, in MB."""
    total = 0
    for member in process_tree(pid):
        try:
            text = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def cpu_s(pid: int) -> float:
    """utime+stime of the process and its descendants."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def udp_rcvbuf_errors(pair: NetnsPair, ns: str) -> int:
    out = pair.run(ns, "cat", "/proc/net/snmp", timeout=10).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def start_server(
    pair: NetnsPair, kind: str, conf: Path, timeout: float = 30
) -> subprocess.Popen[bytes]:
    from tests.netns import wait_for

    if kind == "ours":
        argv = [*pair.python_argv(), "-m", "tunnel", "server", "--config", str(conf)]
    elif kind.startswith("ours@"):  # another tree of ours (scripts/flood --kinds ours@DIR)
        # -C: `python -m` puts the working directory first on sys.path
        argv = ["env", "-C", kind[5:], f"PYTHONPATH={kind[5:]}", *pair.python_argv(), "-m",
                "tunnel", "server", "--config", str(conf)]
    else:
        openvpn = shutil.which("openvpn")
        assert openvpn is not None
        argv = [openvpn, "--config", str(conf)]
    proc: subprocess.Popen[bytes] = pair.spawn(
        pair.ns_a, *argv,
        log_path=pair.workdir / f"server-{kind.replace('/', '_')}-{time.monotonic_ns()}.log")
    ok = wait_for(lambda: "Initialization Sequence Completed" in pair.log(proc)
                  or proc.poll() is not None, timeout)
    assert ok and proc.poll() is None, pair.log(proc)
    return proc


def legit_connect(pair: NetnsPair, client_conf: Path, timeout: float = 60) -> float | None:
    """The stock client's seconds from start to its tunnel being up (None: not in time)."""
    openvpn = shutil.which("openvpn")
    assert openvpn is not None
    began = time.monotonic()
    proc = pair.spawn(pair.ns_b, openvpn, "--config", str(client_conf),
                      log_path=pair.workdir / f"legit-{time.monotonic_ns()}.log")
    try:
        while time.monotonic() - began < timeout:
            if "Initialization Sequence Completed" in pair.log(proc):
                return time.monotonic() - began
            if proc.poll() is not None:
                return None
            time.sleep(0.02)
        return None
    finally:
        pair.stop(proc)


def generator(pair: NetnsPair, *args: object) -> subprocess.Popen[bytes]:
    return pair.spawn(pair.ns_b, *pair.python_argv(), "-m", "tests.flood",
                      *map(str, args),
                      log_path=pair.workdir / f"gen-{time.monotonic_ns()}.log")


def generator_result(
    pair: NetnsPair, proc: subprocess.Popen[bytes], timeout: float
) -> dict[str, object]:
    from tests.netns import wait_for

    assert wait_for(lambda: pair.log(proc).strip().startswith("{"), timeout), pair.log(proc)
    result: dict[str, object] = json.loads(pair.log(proc).strip().splitlines()[0])
    return result


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- the scenarios: one server kind each, figures back -----------------------------------------


@dataclass
class Lab:
    """A pair, one server config for both kinds (extra lines per scenario), one client config."""

    pair: NetnsPair
    server_conf: Path
    client_conf: Path
    port: int

    def conf(self, extra: str) -> Path:
        path = self.server_conf.with_name(f"server-{time.monotonic_ns()}.conf")
        path.write_text(self.server_conf.read_text() + "verb 3\n" + extra)
        return path

    @property
    def host(self) -> str:
        return str(self.pair.addr_a)


def expiry(lab: Lab, kind: str, *, rate: float, seconds: float, hand_window: int,
           samples: int = 4) -> Figures:
    """Item 3: cookie-echoing resets at `rate`/s for `seconds` with a short hand-window, so
    about rate x hand-window are half-open at any time: RSS sampled `samples` times during the
    flood (flat once they expire as fast as they come; a leak grows linearly) and after it."""
    pair = lab.pair
    server = start_server(pair, kind, lab.conf(f"hand-window {hand_window}\n"))
    try:
        time.sleep(1)
        before, cpu0 = rss_mb(server.pid), cpu_s(server.pid)
        count = int(rate * seconds)
        began = time.monotonic()
        gen = generator(pair, "stall", lab.host, lab.port, count, rate, hand_window + 8)
        sampled: list[float] = []
        for k in range(1, samples + 1):
            time.sleep(max(0.0, began + seconds * k / samples - time.monotonic()))
            sampled.append(rss_mb(server.pid))
        answered = generator_result(pair, gen, 30)["answered"]
        time.sleep(hand_window + 5)  # every one of them past its hand-window
        after = rss_mb(server.pid)
        return Figures(kind, {"sessions": count, "answered": str(answered),
                              "rss_before_mb": before,
                              "rss_during_mb": "/".join(f"{x:.1f}" for x in sampled),
                              "rss_after_mb": after, "cpu_s": cpu_s(server.pid) - cpu0})
    finally:
        pair.stop(server)


def stalled(lab: Lab, kind: str, *, count: int) -> Figures:
    """Item 4: `count` handshakes stalled after the cookie; a legitimate client's connect."""
    pair = lab.pair
    server = start_server(pair, kind, lab.conf(""))
    try:
        gen = generator(pair, "stall", lab.host, lab.port, count, 500, 120)
        answered = generator_result(pair, gen, 60)["answered"]
        time.sleep(0.5)
        took = legit_connect(pair, lab.client_conf, timeout=30)
        pair.stop(gen)
        return Figures(kind, {"stalled": str(answered), "legit_connect_s":
                              took if took is not None else "never (30 s)",
                              "rss_mb": rss_mb(server.pid)})
    finally:
        pair.stop(server)


def arrivals(lab: Lab, kind: str, *, count: int, rate: float) -> Figures:
    """Item 5: `count` clients at `rate`/s: how long each waited for the server's answer."""
    pair = lab.pair
    server = start_server(pair, kind, lab.conf(""))
    try:
        gen = generator(pair, "arrive", lab.host, lab.port, count, rate, 60)
        waited = generator_result(pair, gen, count / rate + 90)["waited"]
        assert isinstance(waited, list)
        got = [float(w) for w in waited if w is not None]
        return Figures(kind, {"clients": count, "answered": str(len(got)),
                              "wait_p50_s": percentile(got, 50) if got else -1.0,
                              "wait_p95_s": percentile(got, 95) if got else -1.0,
                              "wait_max_s": max(got) if got else -1.0})
    finally:
        pair.stop(server)


def garbage_flood(lab: Lab, kind: str, *, sessions: int, count: int, idle: float) -> Figures:
    """Item 6: `sessions` up, idle CPU; then `count` garbage datagrams: how many the kernel
    dropped for want of a reader; then a legitimate client's connect."""
    pair = lab.pair
    server = start_server(pair, kind, lab.conf(""))
    try:
        gen = generator(pair, "stall", lab.host, lab.port, sessions, 500, 300)
        generator_result(pair, gen, 60)
        time.sleep(0.5)
        cpu0 = cpu_s(server.pid)
        time.sleep(idle)
        idle_pct = (cpu_s(server.pid) - cpu0) / idle * 100
        drops0 = udp_rcvbuf_errors(pair, pair.ns_a)
        cpu1 = cpu_s(server.pid)
        blast = generator(pair, "garbage", lab.host, lab.port, count)
        sent = generator_result(pair, blast, 120)["sent"]
        assert isinstance(sent, int)
        time.sleep(1)
        dropped = udp_rcvbuf_errors(pair, pair.ns_a) - drops0
        flood_cpu = cpu_s(server.pid) - cpu1
        took = legit_connect(pair, lab.client_conf, timeout=30)
        pair.stop(gen)
        return Figures(kind, {"sessions": sessions, "idle_cpu_pct": idle_pct,
                              "garbage_sent": sent, "kernel_dropped_pct":
                              100.0 * dropped / max(sent, 1), "flood_cpu_s": flood_cpu,
                              "legit_connect_s": took if took is not None else "never (30 s)",
                              "rss_mb": rss_mb(server.pid)})
    finally:
        pair.stop(server)


def make_lab(pair: NetnsPair, tmp: Path) -> Lab:
    from tests.e2e.test_ours_tun import PORT, _write_configs

    server_conf, client_conf, _net, _status = _write_configs(pair, tmp)
    return Lab(pair, server_conf, client_conf, PORT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
