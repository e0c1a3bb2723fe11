"""Client routing equals stock's (issue 11 item 6): the routes our client installs from a push.

A stock server (the openvpn-sample pair) pushes redirect-gateway def1, a route and a DNS
server; the client's namespace has a default route through the server's veth address (the
"net gateway"). Stock's client and ours run in turn with the same profile, plus pull-filter
or route-nopull variants, and the IPv4 routing tables they leave in the client namespace
(device names normalised) must be the same: the def1 pair through the VPN, the host route to
the server through the old gateway, the pushed route unless filtered, and a config route
through net_gateway.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.corpus.materials import make_materials, prepare, render
from tests.corpus.test_corpus import PAIRS_DIR, _server_network, _start, workdir
from tests.netns import NetnsPair

pytestmark = [pytest.mark.root, pytest.mark.openvpn]
__all__ = ["workdir"]

SERVER_EXTRA = ('push "redirect-gateway def1 bypass-dhcp"\npush "route 10.99.0.0 255.255.0.0"\n'
                'push "dhcp-option DNS 10.8.0.1"\n')
VARIANTS = {
    "plain": "route 192.0.2.0 255.255.255.0 net_gateway\n",
    "pull-filter": 'pull-filter ignore "route 10.99"\n',
    "route-nopull": "route-nopull\n",
}


def _routes(pair: NetnsPair, ns: str, veth: str) -> set[tuple[str, str, str]]:
    """(dst, gateway, device) with the pair's random veth addresses named SERVER / VETH-NET."""
    names = {str(pair.addr_a): "SERVER", str(pair.subnet): "VETH-NET"}
    out = json.loads(pair.run(ns, "ip", "-j", "-4", "route", "show", check=True).stdout)
    table = set()
    for route in out:
        dev = route.get("dev", "")
        dst, gateway = route["dst"], route.get("gateway", "")
        table.add((names.get(dst, dst), names.get(gateway, gateway),
                   "veth" if dev == veth else "tun" if dev.startswith("tun") else dev))
    return table


def _client_routes(kind: str, extra: str, workdir: Path) -> set[tuple[str, str, str]]:
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        pair.run(pair.ns_b, "ip", "route", "add", "default", "via", str(pair.addr_a), check=True)
        fill = {"remote": str(pair.addr_a), "local": str(pair.addr_a)}
        server_text = render((PAIRS_DIR / "openvpn-sample" / "server.conf").read_text(),
                             materials, **fill) + SERVER_EXTRA
        client_text = render((PAIRS_DIR / "openvpn-sample" / "client.ovpn").read_text(),
                             materials, **fill) + extra
        _server_network(server_text)
        server_dir, client_dir = workdir / "server", workdir / "client"
        for directory in (server_dir, client_dir):
            prepare(directory, materials)
        (server_dir / "server.conf").write_text(server_text)
        (client_dir / "client.ovpn").write_text(client_text)
        server = _start(pair, pair.ns_a, "stock", "server", server_dir / "server.conf")
        try:
            server.wait_up()
            client = _start(pair, pair.ns_b, kind, "client", client_dir / "client.ovpn")
            try:
                client.wait_up()
                return _routes(pair, pair.ns_b, pair.veth_b)
            finally:
                client.stop()
        finally:
            server.stop()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_client_routes_match_stock(variant: str, workdir: Path) -> None:
    stock = _client_routes("stock", VARIANTS[variant], workdir / "stock")
    ours = _client_routes("ours", VARIANTS[variant], workdir / "ours")
    assert ("0.0.0.0/1", "10.8.0.1", "tun") in stock or variant == "route-nopull", stock
    assert ours == stock, f"only stock: {sorted(stock - ours)}, only ours: {sorted(ours - stock)}"
