"""Requirement markers: `root` and one marker per external tool (loaded by tests/conftest.py).

    @pytest.mark.root                       # needs root (namespaces, TUN devices)
    @pytest.mark.iperf3                     # needs the iperf3 binary
    pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping]

A test whose requirement is missing skips with the reason on a developer machine and FAILS under
CI (`CI=true`), so CI cannot pass without running it. At the end of the run the terminal summary
lists what was missing and the one `apt-get install` line that brings every missing tool.

A test that uses the `netns_pair` fixture is marked `root` and `ip` automatically. A fixture
that finds out at run time that it needs a tool (say, debootstrap only when no image registry
answers) calls `require_tool("debootstrap")`: same skip/fail policy, same summary.

Add a tool by adding a row to TOOLS; the marker is registered from it (unknown markers are an
error: `--strict-markers`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# sudo and root's PATH have the sbin directories; a user's PATH often does not, and `nft`,
# `openvpn`, `ip` live there. Look there too, so "missing" means not installed.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def which(name: str) -> str | None:
    """The path of executable `name` on PATH or in the sbin directories, else None."""
    found = shutil.which(name)
    if found is not None:
        return found
    return shutil.which(name, path=os.pathsep.join(_SBIN))


def _compose_present() -> bool:
    """docker-compose (Debian's 1.29) or the `docker compose` v2 plugin."""
    if which("docker-compose") is not None:
        return True
    docker = which("docker")
    if docker is None:
        return False
    try:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _lzo_present() -> bool:
    """python-lzo in this interpreter (`make` installs it where liblzo2-dev lets it build)."""
    return importlib.util.find_spec("lzo") is not None


def _native_aead_present() -> bool:
    """tunnel._aead, the compiled libcrypto AEAD (`pip install` builds it with gcc and
    libssl-dev; without them the data channel uses cryptography)."""
    return importlib.util.find_spec("tunnel._aead") is not None


def _docker_present() -> bool:
    """The docker CLI, compose, and an engine: a running one or dockerd to start."""
    running = os.path.exists("/var/run/docker.sock") or bool(os.environ.get("DOCKER_HOST"))
    return (which("docker") is not None and _compose_present()
            and (running or which("dockerd") is not None))


@dataclass(frozen=True)
class Tool:
    """What a marker needs: executables, the Debian packages that bring them, what for."""

    executables: tuple[str, ...]
    packages: tuple[str, ...]
    what: str
    present: Callable[[], bool] | None = field(default=None, compare=False)

    def is_present(self) -> bool:
        if self.present is not None:
            return self.present()
        return all(which(exe) is not None for exe in self.executables)


TOOLS: dict[str, Tool] = {
    "openvpn": Tool(("openvpn",), ("openvpn",), "the stock OpenVPN 2.6 as the peer"),
    "iperf3": Tool(("iperf3",), ("iperf3",), "TCP throughput through the tunnel"),
    "ping": Tool(("ping",), ("iputils-ping",), "echoes through the tunnel"),
    "nft": Tool(("nft",), ("nftables",), "packet loss on a veth"),
    "ip": Tool(("ip", "ss", "tc"), ("iproute2",),
               "network namespaces, veth pairs, addresses, queueing disciplines"),
    "unshare": Tool(("unshare",), ("util-linux",), "a throwaway network namespace"),
    "setpriv": Tool(("setpriv",), ("util-linux",), "running without CAP_NET_ADMIN"),
    "tcpdump": Tool(("tcpdump",), ("tcpdump",), "captures on a veth"),
    "sockperf": Tool(("sockperf",), ("sockperf",), "UDP latency through the tunnel"),
    "openssl": Tool(("openssl",), ("openssl",), "the openssl CLI as an oracle"),
    "docker_compose": Tool(("docker-compose",), ("docker-compose",),
                           "resolving docker-compose.yml without an engine"),
    "docker": Tool(("docker", "dockerd", "docker-compose"), ("docker.io", "docker-compose"),
                   "a Docker engine for the compose topology", present=_docker_present),
    "lzo": Tool(("python-lzo",), ("liblzo2-dev",),
                "LZO decompression; `make test` builds it once liblzo2-dev is installed",
                present=_lzo_present),
    "native_aead": Tool(("tunnel._aead",), ("gcc", "python3-dev", "libssl-dev"),
                        "the compiled libcrypto AEAD (tunnel/_aead.c; reinstall after "
                        "installing them)", present=_native_aead_present),
    "debootstrap": Tool(("debootstrap",), ("debootstrap",),
                        "a local Debian base image when no image registry answers"),
}

# The fixture names that imply markers (so a test cannot forget them).
FIXTURE_MARKERS: dict[str, tuple[str, ...]] = {
    "netns_pair": ("root", "ip"),
    "docker_compose": ("docker_compose",),
}

_ROOT_REASON = "needs root"


@dataclass
class _Missing:
    """What this run found missing: tool marker name -> test ids, plus tests that needed root."""

    tools: dict[str, list[str]] = field(default_factory=dict)
    root: list[str] = field(default_factory=list)


_missing = _Missing()


def _reason(name: str) -> str:
    tool = TOOLS[name]
    exes = ", ".join(tool.executables)
    return f"needs {exes} for {tool.what} (apt-get install {' '.join(tool.packages)})"


def _refuse(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason}: required in CI", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> None:
    """At run time: skip (fail under CI) unless tool `name` (a key of TOOLS) is present."""
    if _present(name):
        return
    # "tests/x.py::test_y (call)": the test this happens in, for the summary's count.
    nodeid = os.environ.get("PYTEST_CURRENT_TEST", "(a fixture)").rsplit(" ", 1)[0]
    _missing.tools.setdefault(name, []).append(nodeid)
    _refuse(_reason(name))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "root: needs root (network namespaces, TUN devices); fails in CI without it")
    for name in TOOLS:
        config.addinivalue_line(
            "markers", f"{name}: {_reason(name)}; skips without it, fails in CI")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, markers in FIXTURE_MARKERS.items():
            if fixture in fixtures:
                for marker in markers:
                    if item.get_closest_marker(marker) is None:
                        item.add_marker(marker)


_present_cache: dict[str, bool] = {}


def _present(name: str) -> bool:
    if name not in _present_cache:
        _present_cache[name] = TOOLS[name].is_present()
    return _present_cache[name]


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Record every missing requirement of the test (not only the first) for the summary, then
    # refuse with the first one.
    reasons: list[str] = []
    if item.get_closest_marker("root") and os.geteuid() != 0:
        _missing.root.append(item.nodeid)
        reasons.append(_ROOT_REASON)
    for name in TOOLS:
        if item.get_closest_marker(name) and not _present(name):
            _missing.tools.setdefault(name, []).append(item.nodeid)
            reasons.append(_reason(name))
    if reasons:
        _refuse("; ".join(reasons))


def missing_summary() -> list[str]:
    """The lines the terminal summary prints (empty when nothing was missing)."""
    lines: list[str] = []
    if _missing.root:
        lines.append(f"{len(_missing.root)} tests need root: run `sudo make test` to run them")
    if _missing.tools:
        for name in sorted(_missing.tools):
            count = len(set(_missing.tools[name]))
            lines.append(f"missing {', '.join(TOOLS[name].executables)} "
                         f"({TOOLS[name].what}): {count} tests")
        packages = sorted({p for name in _missing.tools for p in TOOLS[name].packages})
        lines.append("install them with:  sudo apt-get install -y --no-install-recommends "
                     + " ".join(packages))
    return lines


_results: list[str] = []


def report_result(line: str) -> None:
    """A measured result (say, iperf3 through the tunnel) for the end of the run: under
    `pytest -q` a passing test's prints are not shown, these are."""
    _results.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _results:
        terminalreporter.section("results")
        for line in _results:
            terminalreporter.line(line)
    lines = missing_summary()
    if not lines:
        return
    title = "missing requirements (failures under CI)" if IN_CI else "missing requirements"
    terminalreporter.section(title, yellow=True)
    for line in lines:
        terminalreporter.line(line)
