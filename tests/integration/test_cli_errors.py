"""Bad input to `tunnel server/client --config`: one clear line on stderr, non-zero exit.

Each case runs `python -m tunnel ...` as a subprocess, exactly as a user would, and checks that
it fails at start with a single line that names the problem, and never with a traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import which
from tunnel.app.effects import APPLIED, NO_EFFECT
from tunnel.config import SUPPORTED_OPTIONS
from tunnel.pki import PkiPaths, generate_pki

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60  # every run is bounded; the slowest case is a DNS lookup


@pytest.fixture(name="pki", scope="module")
def pki_fixture(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return generate_pki(tmp_path_factory.mktemp("pki"))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_conf(pki: PkiPaths, port: int, extra: str = "") -> str:
    return f"""\
dev tun
proto udp
local 127.0.0.1
port {port}
server 10.231.17.0 255.255.255.0
ca {pki.ca_cert}
cert {pki.server_cert}
key {pki.server_key}
dh none
keepalive 10 60
{extra}
"""


def _client_conf(pki: PkiPaths, remote: str, extra: str = "") -> str:
    cert, key = pki.clients["client"]
    return f"""\
client
dev tun
proto udp
remote {remote} 1194
nobind
ca {pki.ca_cert}
cert {cert}
key {key}
remote-cert-tls server
{extra}
"""


def _run(
    role: str, conf: Path, *, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [*prefix, sys.executable, "-m", "tunnel", role, "--config", str(conf)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
    )


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _assert_one_line_failure(
    result: subprocess.CompletedProcess[str], role: str, *needles: str
) -> str:
    assert result.returncode != 0, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"tunnel {role}: error: "), line
    for needle in needles:
        assert needle in line, line
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return line


# -- config problems ------------------------------------------------------------------------


def test_malformed_config_names_file_and_line(tmp_path: Path, pki: PkiPaths) -> None:
    conf = _write(tmp_path, "server.conf", _server_conf(pki, 1194).replace(
        "dh none", "dh none\nfrobnicate yes"))
    result = _run("server", conf)
    _assert_one_line_failure(result, "server", f"{conf}:10:", "unsupported option 'frobnicate'")


def test_missing_certificate_file(tmp_path: Path, pki: PkiPaths) -> None:
    missing = tmp_path / "nowhere" / "server.crt"
    conf = _write(tmp_path, "server.conf", _server_conf(pki, 1194).replace(
        str(pki.server_cert), str(missing)))
    result = _run("server", conf)
    _assert_one_line_failure(result, "server", f"{conf}:7:", str(missing), "No such file")


def test_missing_config_file(tmp_path: Path) -> None:
    result = _run("client", tmp_path / "absent.ovpn")
    _assert_one_line_failure(result, "client", "absent.ovpn", "cannot read the config file")


def test_client_config_given_to_the_server_command(tmp_path: Path, pki: PkiPaths) -> None:
    conf = _write(tmp_path, "client.conf", _client_conf(pki, "127.0.0.1"))
    result = _run("server", conf)
    _assert_one_line_failure(result, "server", "client configuration", "tunnel client")


def test_unknown_user(tmp_path: Path, pki: PkiPaths) -> None:
    conf = _write(tmp_path, "server.conf",
                  _server_conf(pki, _free_udp_port(), "user no-such-user-here"))
    result = _run("server", conf)
    _assert_one_line_failure(result, "server", f"{conf}:11:", "no such user 'no-such-user-here'")


@pytest.mark.parametrize("option", ["log", "status"])
def test_log_or_status_file_in_a_missing_directory(
    tmp_path: Path, pki: PkiPaths, option: str
) -> None:
    target = tmp_path / "no-such-dir" / f"tunnel.{option}"
    text = _server_conf(pki, _free_udp_port(), f"{option} {target}")
    conf = _write(tmp_path, "server.conf", text)
    result = _run("server", conf)
    _assert_one_line_failure(result, "server", f"{conf}:11:", str(target), "No such file")


# -- the system refuses -------------------------------------------------------------------------


def test_port_in_use(tmp_path: Path, pki: PkiPaths) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        conf = _write(tmp_path, "server.conf", _server_conf(pki, port))
        result = _run("server", conf)
    _assert_one_line_failure(result, "server", f"127.0.0.1:{port}", "already in use")


@pytest.mark.root
@pytest.mark.setpriv
@pytest.mark.parametrize("role", ["server", "client"])
def test_no_permission_for_tun(tmp_path: Path, pki: PkiPaths, role: str) -> None:
    # A config that works as root, run as user nobody. The interpreter lives under /root
    # (mode 0700) here, so nobody keeps exactly one capability, CAP_DAC_READ_SEARCH, to be able
    # to start it and read the test's files; it has no CAP_NET_ADMIN, so no TUN device.
    setpriv = which("setpriv")
    assert setpriv is not None
    text = (_server_conf(pki, _free_udp_port()) if role == "server"
            else _client_conf(pki, "127.0.0.1"))
    conf = _write(tmp_path, f"{role}.conf", text)
    prefix = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
              "--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search",
              "--bounding-set=-all,+dac_read_search")
    result = _run(role, conf, prefix=prefix)
    _assert_one_line_failure(result, role, "/dev/net/tun", "need root or CAP_NET_ADMIN")


# -- the remote cannot be reached ---------------------------------------------------------------


def test_unresolvable_remote(tmp_path: Path, pki: PkiPaths) -> None:
    # .invalid never resolves (RFC 6761).
    conf = _write(tmp_path, "client.conf", _client_conf(pki, "vpn.example.invalid"))
    result = _run("client", conf)
    _assert_one_line_failure(result, "client", "cannot resolve remote 'vpn.example.invalid'")


@pytest.mark.root
@pytest.mark.unshare
def test_unreachable_remote(tmp_path: Path, pki: PkiPaths) -> None:
    # In a fresh network namespace (unshare: it vanishes with the process) there is no route
    # at all, so the kernel refuses to send to the remote: fail at start, not retry forever.
    unshare = which("unshare")
    assert unshare is not None
    conf = _write(tmp_path, "client.conf", _client_conf(pki, "192.0.2.1"))
    result = _run("client", conf, prefix=(unshare, "--net", "--"))
    _assert_one_line_failure(result, "client", "remote 192.0.2.1", "unreachable")


# -- nothing the parser accepts is silently ignored ----------------------------------------------


def test_every_accepted_option_is_applied_or_reported() -> None:
    unclassified = set(SUPPORTED_OPTIONS) - APPLIED - set(NO_EFFECT)
    assert not unclassified, f"options neither applied nor reported: {sorted(unclassified)}"
    assert not APPLIED & set(NO_EFFECT), "an option cannot be both"
