"""Client options stock acts on at run time (issue 11 item 8), each run by stock and by ours.

The openvpn-sample pair, a stock server pushing a route, and the client (stock, then ours) with
one option added:

* `route-delay N`: the device gets its address at once, the routes (and route-up) N seconds
  later, and "Initialization Sequence Completed" only after them;
* `machine-readable-output`: every log line starts "<seconds>.<microseconds> <hex flags> ".

Each kind must show the behaviour, so a test that passes for ours tests what stock does.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.corpus.materials import make_materials, prepare, render
from tests.corpus.test_corpus import PAIRS_DIR, _server_network, _start, workdir
from tests.e2e.openvpn_peer import INIT_DONE, PeerProcess
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn]
__all__ = ["workdir"]

PUSHED_ROUTE = "10.99.0.0/16"
SERVER_EXTRA = 'push "route 10.99.0.0 255.255.0.0"\n'


@contextlib.contextmanager
def sample_pair(
    kinds: tuple[str, str], workdir: Path, *, server_extra: str = "", client_extra: str = ""
) -> Iterator[tuple[NetnsPair, PeerProcess, PeerProcess, ipaddress.IPv4Network]]:
    """The openvpn-sample pair with extra lines, server up, client started (not waited for)."""
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        fill = {"remote": str(pair.addr_a), "local": str(pair.addr_a)}
        server_text = render((PAIRS_DIR / "openvpn-sample" / "server.conf").read_text(),
                             materials, **fill) + SERVER_EXTRA + server_extra
        client_text = render((PAIRS_DIR / "openvpn-sample" / "client.ovpn").read_text(),
                             materials, **fill) + client_extra
        network = _server_network(server_text)
        server_dir, client_dir = workdir / "server", workdir / "client"
        for directory in (server_dir, client_dir):
            prepare(directory, materials)
        (server_dir / "server.conf").write_text(server_text)
        (client_dir / "client.ovpn").write_text(client_text)
        server = _start(pair, pair.ns_a, kinds[0], "server", server_dir / "server.conf")
        try:
            server.wait_up()
            client = _start(pair, pair.ns_b, kinds[1], "client", client_dir / "client.ovpn")
            try:
                yield pair, server, client, network
            finally:
                client.stop()
        finally:
            server.stop()


def _has(pair: NetnsPair, ns: str, *words: str) -> bool:
    out = pair.run(ns, "ip", "-4", "route", "show").stdout + \
        pair.run(ns, "ip", "-4", "-o", "addr", "show").stdout
    return all(word in out for word in words)


@pytest.mark.parametrize("kind", ["stock", "ours"])
def test_route_delay_adds_routes_later(kind: str, workdir: Path) -> None:
    delay = 3
    with sample_pair(("stock", kind), workdir, client_extra=f"route-delay {delay}\n"
                     ) as (pair, _server, client, network):
        address = str(network[2]).rsplit(".", 1)[0] + "."  # the client's 10.8.0.x
        assert wait_for(lambda: _has(pair, pair.ns_b, address) or client.proc.poll()
                        is not None, 45, 0.05), client.describe()
        addressed = time.monotonic()
        assert not _has(pair, pair.ns_b, PUSHED_ROUTE), "route added with the address"
        assert INIT_DONE not in client.log(), client.describe()
        assert wait_for(lambda: _has(pair, pair.ns_b, PUSHED_ROUTE), delay + 10, 0.05), \
            client.describe()
        waited = time.monotonic() - addressed
        assert waited >= delay - 1.0, f"route after {waited:.1f} s\n{client.describe()}"
        assert wait_for(lambda: INIT_DONE in client.log(), 5), client.describe()
        log = client.log()
        assert log.index("net_route_v4_add: 10.99.0.0/16") < log.index(INIT_DONE), log


_MACHINE_LINE = re.compile(r"^\d{10,}\.\d{6} [0-9a-f]+ \S")


@pytest.mark.parametrize("kind", ["stock", "ours"])
def test_machine_readable_output(kind: str, workdir: Path) -> None:
    with sample_pair(("stock", kind), workdir, client_extra="machine-readable-output\n"
                     ) as (_pair, _server, client, _network):
        client.wait_up()
        lines = [line for line in client.log().splitlines() if line]
        odd = [line for line in lines if not _MACHINE_LINE.match(line)]
        assert lines and not odd, "\n".join(odd[:10])
        stamp = float(lines[-1].split()[0])
        assert abs(stamp - time.time()) < 60, lines[-1]
        assert any(line.split(" ", 2)[2] == INIT_DONE for line in lines), lines[-5:]
