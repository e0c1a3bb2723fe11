"""docker-compose.yml on a real Docker engine: build, `up`, traffic through the tunnel, `down -v`.

The image is built from the Dockerfile (on a local stand-in base when no registry answers, see
base_image.py), then the whole topology runs: our server, our client and the stock openvpn as
a second client, each with ping + iperf3 through its tunnel. The test reads what the two
traffic services printed and asserts on it. Everything is removed afterwards, also on failure:
`down -v` (containers, networks, the PKI volume), the image it built, and the engine itself
when the test started it (docker_engine.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.base_image import base_image, pip_build_args
from tests.e2e.docker_engine import Engine, docker_engine
from tests.netns import REPO_ROOT
from tests.tools import report_result, which

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.timeout(1200)]

IPERF_SECONDS = 3
TRAFFIC = {"iperf3": "our client's", "iperf3-openvpn": "the stock openvpn client's"}
PING_OK = re.compile(r"5 packets transmitted, 5 received, 0% packet loss")
RECEIVER = re.compile(r"([\d.]+) MBytes\s+([\d.]+) Mbits/sec\s+receiver")


@dataclass
class Compose:
    engine: Engine
    argv: list[str]
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.argv, *args], capture_output=True, text=True,
                                timeout=timeout, env=self.env, cwd=REPO_ROOT)
        if check and result.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-4000:]}{result.stderr[-4000:]}\n"
                                 f"{self.logs()}")
        return result

    def logs(self, *services: str) -> str:
        result = subprocess.run([*self.argv, "logs", "--no-color", *services],
                                capture_output=True, text=True, timeout=60, env=self.env,
                                cwd=REPO_ROOT)
        return result.stdout + result.stderr


def _compose_argv(engine: Engine) -> list[str]:
    plugin = engine.docker("compose", "version", check=False)
    if plugin.returncode == 0:
        return [engine.docker_cli, "compose"]
    path = which("docker-compose")
    assert path is not None  # the `docker` marker checked for one of the two
    return [path]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with docker_engine() as running:
        yield running


@pytest.fixture(scope="module")
def image(engine: Engine) -> Iterator[str]:
    """The tunnel image, built from the Dockerfile under a tag of this run; removed after."""
    log: list[str] = []
    imported: list[str] = []
    tag = f"pyovpn-tunnel:test-{secrets.token_hex(4)}"
    try:
        base = base_image(engine, log, imported)
        build_args = ["--build-arg", f"BASE_IMAGE={base}", *pip_build_args()]
        # The predefined proxy build args pass the host's proxy, not kept in the image.
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                    "no_proxy"):
            if os.environ.get(var):
                build_args += ["--build-arg", f"{var}={os.environ[var]}"]
        started = time.monotonic()
        # The classic builder: the same with every engine and CLI version, no buildx needed.
        # --network host: RUN steps reach the package servers without a NAT rule on the host.
        engine.env["DOCKER_BUILDKIT"] = "0"
        engine.docker("build", "--network", "host", *build_args, "-t", tag, str(REPO_ROOT),
                      timeout=900)
        log.append(f"image {tag} built from the Dockerfile on {base} in "
                   f"{time.monotonic() - started:.0f} s")
        report_result("compose: " + "; ".join(log))
        yield tag
    finally:
        # Also after a failed build. Our own engine takes its images with it.
        if not engine.ours:
            engine.docker("image", "rm", "-f", tag, *imported, check=False)


@pytest.fixture
def compose(engine: Engine, image: str) -> Iterator[Compose]:
    project = f"tunneltest{os.getpid()}{secrets.token_hex(3)}"
    env = {**engine.env, "TUNNEL_IMAGE": image, "IPERF_SECONDS": str(IPERF_SECONDS),
           "COMPOSE_PROJECT_NAME": project}
    argv = [*_compose_argv(engine), "-f", str(REPO_ROOT / "docker-compose.yml")]
    topology = Compose(engine, argv, env)
    try:
        yield topology
    finally:
        topology.run("down", "-v", "--remove-orphans", "--timeout", "5", timeout=180,
                     check=False)
        leftovers = engine.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project="
                                  f"{project}", check=False).stdout.split()
        with contextlib.suppress(Exception):
            if leftovers:
                engine.docker("rm", "-f", *leftovers, check=False)
        assert not leftovers, f"`down -v` left containers: {leftovers}"


def _wait_exit(topology: Compose, service: str, timeout: float) -> int:
    ids = topology.run("ps", "-q", service).stdout.split()
    assert ids, f"no container for {service}:\n{topology.logs()}"
    waited = topology.engine.docker("wait", ids[0], timeout=timeout)
    return int(waited.stdout.strip())


def test_compose_up_traffic_through_both_clients_then_down(compose: Compose) -> None:
    started = time.monotonic()
    # `up -d` returns once every service is started, the health conditions met on the way.
    compose.run("up", "-d", "--no-build", timeout=300)
    for service, who in TRAFFIC.items():
        code = _wait_exit(compose, service, timeout=180)
        out = compose.logs(service)
        print(f"\n---- {service} ({who} container), as `docker compose logs` shows it:\n{out}")
        assert code == 0, f"{service} exited {code}:\n{out}\n{compose.logs()}"
        assert PING_OK.search(out), f"{service}: ping lost echoes:\n{out}"
        received = RECEIVER.search(out)
        assert received and float(received.group(2)) > 0, f"{service}: no iperf3 result:\n{out}"
        report_result(f"compose: iperf3 TCP {IPERF_SECONDS} s from {who} container "
                      f"through the tunnel to our server container: {received.group(2)} "
                      f"Mbit/s ({received.group(1)} MB), ping 5/5")
    stock = compose.logs("openvpn")
    assert "Initialization Sequence Completed" in stock, stock
    report_result(f"compose: up to both results in {time.monotonic() - started:.0f} s")
