"""docker-compose.yml, Dockerfile and deploy/: validated without a Docker engine.

`docker-compose config` (Debian's docker-compose 1.29, which CI installs) checks the file and
prints it fully resolved (anchors merged, paths absolute); the tests read that output, not the
file, so they see what compose itself sees. The configs under deploy/ go through our own
config parser with a real PKI, and the entrypoint runs here under /bin/sh (dash on Debian, as
in the python:*-slim image) for the parts that need no container.

The tests using the `docker_compose` fixture are marked `docker_compose` by it: missing
docker-compose is a failure under CI=true (CI installs it) and a skip elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.netns import REPO_ROOT
from tests.tools import which
from tunnel.config.parser import parse_config

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DEPLOY = REPO_ROOT / "deploy"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
SERVICES = {"pki", "server", "iperf3-server", "client", "iperf3", "openvpn",
            "iperf3-openvpn"}
IMAGE = "pyovpn-tunnel:latest"


@pytest.fixture(scope="module")
def docker_compose() -> str:
    # A test using this fixture is marked `docker_compose` (tests/tools.py FIXTURE_MARKERS),
    # so it skips or fails before it gets here without one.
    path = which("docker-compose")
    assert path is not None
    return path


def _yaml_to_data(docker_compose: str, text: str) -> dict[str, Any]:
    """Parse YAML with PyYAML if this interpreter has it, else with docker-compose's own.

    The project's test environment does not install PyYAML; Debian's docker-compose is a
    Python script whose interpreter always has it (python3-yaml is its dependency).
    """
    try:
        import yaml  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        data: dict[str, Any] = yaml.safe_load(text)
        return data
    with open(docker_compose, "rb") as script:
        first_line = script.readline().decode(errors="replace")
    if not first_line.startswith("#!"):
        pytest.fail(f"no PyYAML here and {docker_compose} is not a Python script")
    interpreter = first_line[2:].split()
    result = subprocess.run(
        [*interpreter, "-c",
         "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        input=text, capture_output=True, text=True, timeout=60, check=True,
    )
    converted: dict[str, Any] = json.loads(result.stdout)
    return converted


@pytest.fixture(scope="module")
def compose(docker_compose: str) -> dict[str, Any]:
    # IPERF_SECONDS from the caller's environment would change the resolved file.
    env = {k: v for k, v in os.environ.items() if k != "IPERF_SECONDS"}
    result = subprocess.run([docker_compose, "-f", str(COMPOSE_FILE), "config"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return _yaml_to_data(docker_compose, result.stdout)


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_every_service_builds_the_one_image(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service["image"] == IMAGE, name
        assert Path(service["build"]["context"]).resolve() == REPO_ROOT, name


@pytest.mark.parametrize("role", ["server", "client"])
def test_tunnel_peers(compose: dict[str, Any], role: str) -> None:
    service = compose["services"][role]
    assert f"tunnel {role} --config /deploy/{role}.conf" in _command(service)
    assert "NET_ADMIN" in service["cap_add"]
    # Short syntax "HOST[:CONTAINER[:PERMS]]": the TUN device node, mapped to itself.
    assert any(str(device).split(":")[0] == "/dev/net/tun" for device in service["devices"])
    assert any(str(volume).startswith("pki:/pki") for volume in service["volumes"])
    assert "underlay" in service["networks"]
    assert "test" in service["healthcheck"]


def test_ordering_and_shared_namespaces(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["server"]["depends_on"]["pki"]["condition"] == (
        "service_completed_successfully")
    assert services["client"]["depends_on"]["server"]["condition"] == "service_healthy"
    # The iperf3 pair runs inside the peers' network namespaces, i.e. on their TUN devices.
    assert services["iperf3-server"]["network_mode"] == "service:server"
    assert _command(services["iperf3-server"]).startswith("iperf3 -s")
    assert services["iperf3"]["network_mode"] == "service:client"
    assert services["iperf3"]["depends_on"]["client"]["condition"] == "service_healthy"
    assert _command(services["iperf3"]) == "traffic"
    assert services["iperf3"]["environment"]["SERVER_TUN_ADDR"] == "10.8.0.1"
    assert _command(services["pki"]) == "init-pki"
    assert "pki" in compose["volumes"]
    # The stock openvpn: the same client config with its own certificate, its own traffic
    # after ours (one iperf3 server).
    assert _command(services["openvpn"]).startswith("openvpn --config /deploy/client.conf ")
    assert services["openvpn"]["depends_on"]["server"]["condition"] == "service_healthy"
    assert services["iperf3-openvpn"]["network_mode"] == "service:openvpn"
    assert services["iperf3-openvpn"]["depends_on"]["iperf3"]["condition"] == (
        "service_completed_successfully")


def test_tools_need_no_pki(compose: dict[str, Any]) -> None:
    # The iperf3 server runs without the PKI volume: the entrypoint must not wait for one.
    assert "volumes" not in compose["services"]["iperf3-server"]


def test_dockerfile_installs_the_package_and_the_deploy_dir() -> None:
    text = DOCKERFILE.read_text()
    # The base is a build argument whose default is the official Python image.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.1[1-9]", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert re.search(r"^RUN pip install .*\.", text, re.M)
    assert re.search(r"^COPY deploy/ /deploy/$", text, re.M)
    assert 'ENTRYPOINT ["/deploy/entrypoint.sh"]' in text
    for tool in ("iproute2", "iputils-ping", "iperf3", "openvpn"):
        assert tool in text


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunnel.pki import generate_pki

    directory = tmp_path_factory.mktemp("pki")
    generate_pki(directory, days=2)
    return directory


@pytest.mark.parametrize("role", ["server", "client"])
def test_deploy_configs_parse(role: str, pki_dir: Path) -> None:
    """Our parser accepts deploy/<role>.conf as the container sees it (PKI under /pki)."""
    text = (DEPLOY / f"{role}.conf").read_text().replace("/pki/", f"{pki_dir}/")
    cfg = parse_config(text, source=f"deploy/{role}.conf", base_dir=DEPLOY)
    if role == "server":
        assert cfg.mode == "server"
        assert str(cfg.server) == "10.8.0.0/24"  # SERVER_TUN_ADDR 10.8.0.1 in the compose file
    else:
        assert cfg.client and cfg.pull
        assert [(r.host, r.port) for r in cfg.remotes] == [("server", 1194)]  # service name
    assert cfg.data_ciphers == ["AES-256-GCM", "CHACHA20-POLY1305"]


def _entrypoint(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A `tunnel` on PATH that is this checkout, as `pip install .` provides in the image.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "tunnel"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tunnel "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO_ROOT), "PKI_DIR": str(tmp_path / "pki"), "WAIT_SECONDS": "2"}
    return subprocess.run(["/bin/sh", str(ENTRYPOINT), *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_entrypoint_makes_the_pki_once_then_runs_commands(tmp_path: Path) -> None:
    # Before the PKI exists a peer waits for it, and gives up after WAIT_SECONDS; a tool that
    # needs no PKI (iperf3 -s) runs at once.
    waiting = _entrypoint(tmp_path, "tunnel", "--help")
    assert waiting.returncode == 1 and "waiting for the PKI" in waiting.stderr
    at_once = _entrypoint(tmp_path, "sh", "-c", "echo at once")
    assert at_once.returncode == 0 and at_once.stdout.strip() == "at once"

    first = _entrypoint(tmp_path, "init-pki")
    assert first.returncode == 0, first.stderr
    names = {path.name for path in (tmp_path / "pki").iterdir()}
    assert {"ca.crt", "server.crt", "server.key", "client.crt", "client.key",
            "stock-client.crt", "stock-client.key"} <= names
    ca_before = (tmp_path / "pki" / "ca.crt").read_bytes()

    second = _entrypoint(tmp_path, "init-pki")  # a restart keeps the certificates
    assert second.returncode == 0 and "keeping it" in second.stderr
    assert (tmp_path / "pki" / "ca.crt").read_bytes() == ca_before

    ran = _entrypoint(tmp_path, "tunnel", "--help")  # the PKI is there: the peer runs
    assert ran.returncode == 0 and "server" in ran.stdout, ran.stderr


def test_entrypoint_without_arguments_is_a_usage_error(tmp_path: Path) -> None:
    result = _entrypoint(tmp_path)
    assert result.returncode == 2 and "usage" in result.stderr
