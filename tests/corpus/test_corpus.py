"""The generator config corpus, run in both roles against the stock `openvpn` (issue 11).

Each directory under `pairs/` holds a server config and a client profile written the way one
popular generator writes them (the header of each file names the repository, path and commit
it follows). Every pair runs three ways, each in two fresh namespaces joined by a veth:

* stock server + stock client: the pair itself is sound (a failure here is the pair's fault);
* stock server + our client;
* our server + stock client.

A run passes when both peers log "Initialization Sequence Completed" and 3 pings cross the
tunnel each way. Both peers run with the pair's directory as working directory (as the
distributions' systemd units do with `--cd`), holding the key material `materials.py` made.

Pairs that need a feature another issue is still building are marked xfail(strict) with
that feature as the reason, so they are not counted as passing, and a marker left behind
after the feature lands fails the run (XPASS strict).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.corpus.materials import make_materials, prepare, render
from tests.e2e.openvpn_peer import INIT_DONE, PeerProcess, ping, tun_address
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping]

PAIRS_DIR = Path(__file__).parent / "pairs"
PAIRS = sorted(p.name for p in PAIRS_DIR.iterdir() if (p / "server.conf").is_file())
PING_COUNT = 3
UP_TIMEOUT = 45.0

# role -> (server kind, client kind)
ROLES = {
    "stock-stock": ("stock", "stock"),
    "our-client": ("stock", "ours"),
    "our-server": ("ours", "stock"),
}

# What a pair still needs from other helpers' work, per role where ours plays a part: every
# feature the corpus needs has landed (tls-auth/crypt/crypt-v2, management, CBC, compression
# framing, auth-user-pass), so nothing is marked. Add {"pair": {"our-client": ["X (issue N)"]}}.
NEEDS: dict[str, dict[str, list[str]]] = {}


def _cases() -> Iterator[object]:
    for pair in PAIRS:
        for role in ROLES:
            needs = NEEDS.get(pair, {}).get(role, [])
            marks = [pytest.mark.xfail(strict=True, reason="needs " + ", ".join(needs))] \
                if needs else []
            yield pytest.param(pair, role, id=f"{pair}-{role}", marks=marks)


def _server_network(config: str) -> ipaddress.IPv4Network:
    found = re.search(r"^server\s+(\S+)\s+(\S+)", config, re.MULTILINE)
    assert found, "corpus server config without a 'server' line"
    return ipaddress.IPv4Network(f"{found.group(1)}/{found.group(2)}")


def _argv(kind: str, role: str, config: Path) -> list[str]:
    # Both kinds run in the pair's directory: relative paths mean what they mean to stock
    # under `openvpn --cd DIR` (openvpn-server@.service).
    if kind == "stock":
        command = [shutil.which("openvpn") or "openvpn", "--config", config.name]
    else:
        command = [sys.executable, "-m", "tunnel", role, "--config", config.name]
    return ["/bin/sh", "-c", 'cd "$0" && exec "$@"', str(config.parent), *command]


def _has_address(pair: NetnsPair, ns: str, network: ipaddress.IPv4Network) -> bool:
    try:
        tun_address(pair, ns, network)
    except AssertionError:
        return False
    return True


def _wait_up(peer: PeerProcess, network: ipaddress.IPv4Network, config: str) -> None:
    """Up = "Initialization Sequence Completed"; with `syslog` (nothing on stdout), up =
    the peer's tun device carries its address in the VPN network."""
    if not re.search(r"^syslog\b", config, re.MULTILINE):
        peer.wait_up(UP_TIMEOUT)
        return
    wait_for(lambda: _has_address(peer.pair, peer.ns, network) or peer.proc.poll() is not None,
             UP_TIMEOUT, interval=0.2)
    peer.assert_running()
    assert _has_address(peer.pair, peer.ns, network), f"{peer.label} not up: {peer.describe()}"


def _start(pair: NetnsPair, ns: str, kind: str, role: str, config: Path) -> PeerProcess:
    log_path = config.parent / f"{kind}-{role}.log"
    proc = pair.spawn(ns, *_argv(kind, role, config), log_path=log_path)
    return PeerProcess(pair, ns, f"{kind}-{role}", proc, log_path, config)


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not tmp_path: its parents are 0700, and generator configs drop privileges to nobody,
    # after which stock re-reads crl.pem and runs scripts from here.
    path = Path(tempfile.mkdtemp(prefix="corpus-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(("pair_name", "role"), list(_cases()))
def test_pair(pair_name: str, role: str, workdir: Path) -> None:
    server_kind, client_kind = ROLES[role]
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        fill = {"remote": str(pair.addr_a), "local": str(pair.addr_a)}
        server_text = render((PAIRS_DIR / pair_name / "server.conf").read_text(), materials,
                             **fill)
        client_text = render((PAIRS_DIR / pair_name / "client.ovpn").read_text(), materials,
                             **fill)
        network = _server_network(server_text)
        server_dir, client_dir = workdir / "server", workdir / "client"
        for directory in (server_dir, client_dir):
            prepare(directory, materials)
        (server_dir / "server.conf").write_text(server_text)
        (client_dir / "client.ovpn").write_text(client_text)

        server = _start(pair, pair.ns_a, server_kind, "server", server_dir / "server.conf")
        try:
            _wait_up(server, network, server_text)
            client = _start(pair, pair.ns_b, client_kind, "client", client_dir / "client.ovpn")
            try:
                _wait_up(client, network, client_text)
                logs = lambda: f"{server.describe()}\n\n{client.describe()}"  # noqa: E731
                server_ip = network[1]
                crossed = wait_for(lambda: ping(pair, pair.ns_b, server_ip, count=1).ok, 15,
                                   0.2)
                assert crossed, f"no echo to {server_ip} within 15 s\n{logs()}"
                client_ip = tun_address(pair, pair.ns_b, network)
                for ns, target in ((pair.ns_b, server_ip), (pair.ns_a, client_ip)):
                    result = ping(pair, ns, target, count=PING_COUNT)
                    assert result.received == PING_COUNT, (
                        f"ping {target}: {result.received}/{result.sent}\n{result.output}\n"
                        f"{logs()}")
                server.assert_running()
                client.assert_running()
            finally:
                client.stop()
        finally:
            server.stop()


# The pairs whose client logs in with a username and password (checked by the server's
# script against credentials.txt).
USER_PASS_PAIRS = [name for name in PAIRS
                   if re.search(r"^auth-user-pass\b", (PAIRS_DIR / name / "client.ovpn")
                                .read_text(), re.MULTILINE)]


@pytest.mark.parametrize("pair_name", USER_PASS_PAIRS)
@pytest.mark.parametrize("role", list(ROLES))
def test_wrong_password(pair_name: str, role: str, workdir: Path) -> None:
    """A user/password pair with a wrong password: AUTH_FAILED, and no tunnel."""
    server_kind, client_kind = ROLES[role]
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        fill = {"remote": str(pair.addr_a), "local": str(pair.addr_a)}
        pair_dir = PAIRS_DIR / pair_name
        server_text = render((pair_dir / "server.conf").read_text(), materials, **fill)
        client_text = render((pair_dir / "client.ovpn").read_text(), materials, **fill)
        network = _server_network(server_text)
        server_dir, client_dir = workdir / "server", workdir / "client"
        for directory in (server_dir, client_dir):
            prepare(directory, materials)
        (client_dir / "credentials.txt").write_text("corpus-user\nnot-the-password\n")
        (server_dir / "server.conf").write_text(server_text)
        (client_dir / "client.ovpn").write_text(client_text)
        server = _start(pair, pair.ns_a, server_kind, "server", server_dir / "server.conf")
        try:
            _wait_up(server, network, server_text)
            client = _start(pair, pair.ns_b, client_kind, "client", client_dir / "client.ovpn")
            try:
                assert wait_for(lambda: "AUTH_FAILED" in client.log(), 30, 0.2), \
                    f"{client.describe()}\n\n{server.describe()}"
                assert INIT_DONE not in client.log()
                server.assert_running()
            finally:
                client.stop()
        finally:
            server.stop()
