"""The namespace lab: two network namespaces joined by a veth pair, and what runs in them.

    with NetnsPair() as pair:                 # or the `netns_pair` pytest fixture
        proc = pair.spawn(pair.ns_b, *pair.python_argv(), "-m", "tests.e2e.some_peer")
        assert pair.ping(pair.ns_a, pair.addr_b)

The one lab of the project: the tests (the `netns_pair` fixture in tests/conftest.py and every
e2e module), `scripts/lab`, `scripts/bench_netns` (and `scripts/loadgen` through it),
`scripts/flood` and `scripts/capture_wrap_vectors.py` use it. It needs nothing beyond the
standard library (pyroute2 only for `entered`), so the scripts run from a fresh clone under
any Python 3.11.

House rules it enforces:
- Unique names: namespaces `tt-<creator pid>-<6 hex>-a|b`, interfaces `tt<6 hex><suffix>`
  (at most 15 bytes). The creator's pid in the namespace name lets a later run delete what a
  killed run (SIGKILL, power loss) left behind - and only that: live runs are never touched.
- Everything it creates is removed on exit, on failure and on Ctrl-C: processes it spawned
  (SIGTERM, then SIGKILL after a grace period), any other process inside its namespaces, the
  namespaces (which takes the veth and any TUN device with them). SIGTERM is turned into
  KeyboardInterrupt while a pair is live, so `kill <pytest>` cleans up too; atexit is the last
  resort.
- Addresses are random private ones and exist only inside the two namespaces: nothing is
  routed to or from the host's namespace.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
IFNAME_MAX = 15
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL

_NS_PATTERN = re.compile(r"^tt-(\d+)-[0-9a-f]{6}-[a-z]$")
_LIVE: set[NetnsPair] = set()
_atexit_registered = False
_saved_sigterm: Any = None  # the SIGTERM handler to restore when the last pair closes


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it returns something true (True) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def random_subnet(exclude: set[ipaddress.IPv4Network] | None = None) -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 not in `exclude`."""
    while True:
        net = ipaddress.IPv4Network(f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.0/24")
        if not exclude or net not in exclude:
            return net


def random_subnet6() -> ipaddress.IPv6Network:
    """A random /64 in a random ULA prefix (RFC 4193: fd00::/8 + 40 random bits)."""
    value = (0xFD << 120) | (secrets.randbits(56) << 64)
    return ipaddress.IPv6Network((value, 64))


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {result.stderr.strip()}")
    return result


def netns_names() -> list[str]:
    """Every network namespace on the machine (ours or not)."""
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


_netns_names = netns_names


def _kill_netns_processes(ns: str) -> None:
    """SIGKILL whatever still runs inside namespace `ns` (only ever called for ours)."""
    me = os.getpid()  # this process may still be inside (a thread in `entered`): spare it
    for pid in _ip("netns", "pids", ns, check=False).stdout.split():
        if pid.isdigit() and int(pid) != me:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces of this harness whose creating process no longer exists."""
    removed = []
    for name in _netns_names():
        match = _NS_PATTERN.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_netns_processes(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _track(pair: NetnsPair) -> None:
    global _atexit_registered, _saved_sigterm
    if not _atexit_registered:
        atexit.register(_cleanup_all)
        _atexit_registered = True
    if not _LIVE and _saved_sigterm is None:
        with contextlib.suppress(ValueError):  # ValueError: not the main thread
            current = signal.getsignal(signal.SIGTERM)
            if current is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
                _saved_sigterm = current
    _LIVE.add(pair)


def _untrack(pair: NetnsPair) -> None:
    global _saved_sigterm
    _LIVE.discard(pair)
    if not _LIVE and _saved_sigterm is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _saved_sigterm)
            _saved_sigterm = None


def _cleanup_all() -> None:
    for pair in list(_LIVE):
        pair.close()


def _enable_gro(ns: str, dev: str) -> bool:
    """GRO on for `dev` in `ns` (ethtool), as on a NIC; False when ethtool is not there."""
    ethtool = shutil.which("ethtool")
    if ethtool is None:
        return False
    subprocess.run(["ip", "netns", "exec", ns, ethtool, "-K", dev, "gro", "on"], check=True,
                   capture_output=True, timeout=10)
    return True


class NetnsPair:
    """Two namespaces, `ns_a` and `ns_b`, joined by a veth pair; see the module docstring.

    IPv4: `addr_a` (.1) and `addr_b` (.2) in `subnet`; IPv6: `addr6_a` (::1) and `addr6_b`
    (::2) in `subnet6`. `lo` is up in both.
    """

    def __init__(self, workdir: Path | None = None,
                 subnet: ipaddress.IPv4Network | None = None) -> None:
        """`workdir`: where spawned processes log (default: a temporary one, removed on
        close); `subnet`: the veth's /24 (default: a random one)."""
        tag = secrets.token_hex(3)
        self.tag = tag
        self.ns_a = f"tt-{os.getpid()}-{tag}-a"
        self.ns_b = f"tt-{os.getpid()}-{tag}-b"
        self.veth_a = self.ifname("a")
        self.veth_b = self.ifname("b")
        self.subnet = subnet if subnet is not None else random_subnet()
        self.addr_a = self.subnet[1]
        self.addr_b = self.subnet[2]
        self.subnet6 = random_subnet6()
        self.addr6_a = self.subnet6[1]
        self.addr6_b = self.subnet6[2]
        self._given_workdir = workdir
        self.workdir: Path  # set on entry: the given one, or a temporary one removed on exit
        self._subnets = {self.subnet}
        self._procs: dict[subprocess.Popen[bytes], Path] = {}
        self._created: list[str] = []
        # Run on close after the processes stopped, before the namespaces go (newest first):
        # whatever a user of the pair made outside them (a socket file, a route).
        self.cleanups: list[Callable[[], None]] = []
        self._extra_ns: list[str] = []  # add_namespace()
        self.env = dict(os.environ)
        # The namespace's processes import this checkout, whatever their working directory.
        path = self.env.get("PYTHONPATH")
        self.env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
        self.env["PYTHONUNBUFFERED"] = "1"  # logs are complete when a test reads them

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> NetnsPair:
        if os.geteuid() != 0:
            raise PermissionError("NetnsPair needs root (network namespaces, veth)")
        remove_stale_namespaces()
        self.workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="tt-"))
        _track(self)
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _create(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            _ip("netns", "add", ns)
            # After the add, so a failed one never deletes a namespace that is not ours; one
            # interrupted right here is left to the next run's remove_stale_namespaces.
            self._created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", self.veth_a, "netns", self.ns_a, "type", "veth",
            "peer", "name", self.veth_b, "netns", self.ns_b)
        for ns, dev, addr, addr6 in (
            (self.ns_a, self.veth_a, self.addr_a, self.addr6_a),
            (self.ns_b, self.veth_b, self.addr_b, self.addr6_b),
        ):
            _ip("-n", ns, "addr", "add", f"{addr}/{self.subnet.prefixlen}", "dev", dev)
            # nodad: the address is usable at once instead of "tentative" for a second.
            _ip("-n", ns, "addr", "add", f"{addr6}/64", "dev", dev, "nodad")
            _ip("-n", ns, "link", "set", dev, "up")
            self.gro = _enable_gro(ns, dev)

    gro = False
    """Whether the veth merges received datagrams (GRO on, as a NIC's default; a veth's own is
    off): then a peer that asks for UDP GRO (UDP_GRO: ours, wireguard-go) reads runs of
    datagrams as it would from a NIC. Off where `ethtool` is missing."""

    def close(self) -> None:
        """Stop processes, delete the namespaces (idempotent); raises if something stayed."""
        failures: list[str] = []
        try:
            self.stop_all()
        except Exception as exc:  # go on: the namespaces must go in any case
            failures.append(f"stop processes: {exc}")
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception as exc:
                failures.append(f"cleanup: {exc}")
        while self._created:
            ns = self._created.pop()
            try:
                _kill_netns_processes(ns)
                result = _ip("netns", "del", ns, check=False)
                if result.returncode != 0 and ns in _netns_names():
                    failures.append(f"ip netns del {ns}: {result.stderr.strip()}")
            except Exception as exc:
                failures.append(f"delete {ns}: {exc}")
        if self._given_workdir is None and hasattr(self, "workdir"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        _untrack(self)
        if failures:
            raise RuntimeError("NetnsPair cleanup failed: " + "; ".join(failures))

    # -- names and addresses ----------------------------------------------------------------

    def ifname(self, suffix: str) -> str:
        """A unique interface name for this pair, e.g. for a TUN device."""
        name = f"tt{self.tag}{suffix}"
        if len(name.encode()) > IFNAME_MAX:
            raise ValueError(f"interface name {name!r} is longer than {IFNAME_MAX} bytes")
        return name

    def new_subnet(self) -> ipaddress.IPv4Network:
        """Another random /24, distinct from the veth's and from earlier ones of this pair."""
        net = random_subnet(self._subnets)
        self._subnets.add(net)
        return net

    @staticmethod
    def new_subnet6() -> ipaddress.IPv6Network:
        return random_subnet6()

    # -- running things inside ---------------------------------------------------------------

    def add_namespace(self, suffix: str = "c") -> tuple[str, ipaddress.IPv4Address,
                                                        ipaddress.IPv4Address]:
        """A third namespace joined to `ns_a` by its own veth in a new subnet (e.g. a second
        client of a server in `ns_a`): (name, its address on the ns_a side, its own address).
        Removed with the pair, like the first two."""
        ns = f"tt-{os.getpid()}-{self.tag}-{suffix}"
        net = self.new_subnet()
        _ip("netns", "add", ns)
        self._created.append(ns)
        self._extra_ns.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        near, far = self.ifname(f"{suffix}a"), self.ifname(suffix)
        _ip("link", "add", near, "netns", self.ns_a, "type", "veth", "peer", "name", far,
            "netns", ns)
        for where, dev, addr in ((self.ns_a, near, net[1]), (ns, far, net[2])):
            _ip("-n", where, "addr", "add", f"{addr}/{net.prefixlen}", "dev", dev)
            _ip("-n", where, "link", "set", dev, "up")
        return ns, net[1], net[2]

    def _check_ns(self, ns: str) -> None:
        if ns not in (self.ns_a, self.ns_b, *self._extra_ns):
            raise ValueError(f"{ns!r} is not a namespace of this pair")

    @staticmethod
    def python_argv() -> list[str]:
        """argv prefix for this interpreter (`ip netns exec` does not search pyenv shims)."""
        return [sys.executable]

    def run(
        self, ns: str, *argv: str, timeout: float = 30, check: bool = False,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in `ns` to completion (killed after `timeout`: TimeoutExpired)."""
        self._check_ns(ns)
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
            timeout=timeout, check=check, input=input, env=self.env,
        )

    def spawn(
        self, ns: str, *argv: str, log_path: Path | None = None,
        env: dict[str, str] | None = None, cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a command in `ns` in the background; stdout+stderr go to `log_path`.

        `env` replaces the pair's environment (`self.env`: this checkout on PYTHONPATH,
        unbuffered output). It is stopped (SIGTERM, then SIGKILL) when the pair closes, or
        earlier by `stop`.
        """
        self._check_ns(ns)
        if log_path is None:
            log_path = self.workdir / f"{Path(argv[0]).name}-{len(self._procs)}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=self.env if env is None else env, cwd=cwd,
                start_new_session=True,  # its own process group: stop() reaches its children
            )
        self._procs[proc] = log_path
        return proc

    def processes(self) -> list[subprocess.Popen[bytes]]:
        """Everything `spawn` started (stopped ones too), oldest first."""
        return list(self._procs)

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        """What a spawned process has written so far."""
        return self._procs[proc].read_text(errors="replace")

    def stop(self, proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> int:
        """Stop a spawned process and its group: SIGTERM, SIGKILL after `grace`. Its exit code."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        return self._reap(proc, time.monotonic() + grace)

    def stop_all(self, grace: float = STOP_GRACE) -> None:
        """Stop every spawned process: all get SIGTERM at once, then one shared grace period
        (a peer telling the other it exits must not wait for the other's own exit)."""
        procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            self._reap(proc, deadline)

    def _reap(self, proc: subprocess.Popen[bytes], deadline: float) -> int:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        # The leader is gone; children it left in its group still get a SIGKILL (only ever
        # this group: the pid is ours until we reaped it, which happened just now).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    @contextlib.contextmanager
    def entered(self, ns: str) -> Iterator[None]:
        """Run the enclosed code of this thread inside `ns` (setns), then come back.

        Sockets, TUN devices and netlink calls made inside belong to `ns`; so do child
        processes started inside.
        """
        from pyroute2 import netns  # imported here: only this helper needs it

        self._check_ns(ns)
        netns.pushns(ns)
        try:
            yield
        finally:
            netns.popns()

    # -- probes ------------------------------------------------------------------------------

    wait_for = staticmethod(wait_for)

    def ping(
        self, ns: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address | str,
        count: int = 3, timeout: float = 5,
    ) -> bool:
        """True when all `count` echo requests from `ns` to `addr` got a reply within `timeout`."""
        from tests.tools import require_tool  # here: tests.tools is loaded as a plugin after us

        require_tool("ping")  # a test that forgot its `ping` marker still skips/fails clearly
        argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1",
                "-w", str(max(1, round(timeout))), str(addr)]
        return self.run(ns, *argv, timeout=timeout + 5).returncode == 0
