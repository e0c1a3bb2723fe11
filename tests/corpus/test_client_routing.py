"""Client routing equals stock's (issue 11 item 6): the routes our client installs from a push.

A stock server (the openvpn-sample pair) pushes redirect-gateway def1, a route and a DNS
server; the client's namespace has a default route through the server's veth address (the
"net gateway"). Stock's client and ours run in turn with the same profile, plus pull-filter
or route-nopull variants, and the IPv4 routing tables they leave in the client namespace
(device names normalised) must be the same: the def1 pair through the VPN, the host route to
the server through the old gateway, the pushed route unless filtered, and a config route
through net_gateway.

The redirect-gateway variants (the client's own line, OR'd with the pushed def1 as stock does,
or alone when the push is filtered) cover stock's other Linux forms: without def1 the default
route itself is replaced and put back at exit; `local`/`autolocal` skip the server's host route;
`block-local` (with the server outside the gateway's subnet: it listens on an address of its
own behind the gateway, "far") routes the gateway's subnet through the VPN; `ipv6` adds
stock's four IPv6 routes. After the client exits, the table must be what it was before.
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
NO_PUSHED_REDIRECT = 'pull-filter ignore "redirect-gateway"\n'
# variant -> (client extra, server extra, server listens on a far address)
VARIANTS: dict[str, tuple[str, str, bool]] = {
    "plain": ("route 192.0.2.0 255.255.255.0 net_gateway\n", "", False),
    "pull-filter": ('pull-filter ignore "route 10.99"\n', "", False),
    "route-nopull": ("route-nopull\n", "", False),
    "replace-default": (NO_PUSHED_REDIRECT + "redirect-gateway\n", "", False),
    "replace-default-far": (NO_PUSHED_REDIRECT + "redirect-gateway bypass-dhcp\n", "", True),
    "local": (NO_PUSHED_REDIRECT + "redirect-gateway local def1\n", "", False),
    "autolocal": (NO_PUSHED_REDIRECT + "redirect-gateway autolocal\n", "", False),
    "autolocal-far": (NO_PUSHED_REDIRECT + "redirect-gateway autolocal\n", "", True),
    "block-local-far": ("redirect-gateway block-local\n", "", True),
    "block-local-near": ("redirect-gateway block-local\n", "", False),
    "ipv6": ("redirect-gateway ipv6\n", "server-ipv6 fd00:8:8::/64\n", False),
}


Table = set[tuple[str, str, str]]

VPN_DEFAULT = ("default", "10.8.0.1", "tun")
NEAR_HOST_ROUTE = ("GATEWAY", "GATEWAY", "veth")  # the server is the gateway itself
FAR_HOST_ROUTE = ("FAR", "GATEWAY", "veth")
# What stock's table must show (and not show) for the variant to test what it says.
EXPECTED: dict[str, tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]] = {
    "replace-default": ({VPN_DEFAULT, NEAR_HOST_ROUTE}, set()),
    "replace-default-far": ({VPN_DEFAULT, FAR_HOST_ROUTE}, set()),
    "local": ({("0.0.0.0/1", "10.8.0.1", "tun")}, {NEAR_HOST_ROUTE}),
    "autolocal": ({VPN_DEFAULT}, {NEAR_HOST_ROUTE}),
    "autolocal-far": ({VPN_DEFAULT, FAR_HOST_ROUTE}, set()),
    "block-local-far": ({("VETH-NET-LOW", "10.8.0.1", "tun"), ("VETH-NET-HIGH", "10.8.0.1", "tun"),
                         NEAR_HOST_ROUTE, FAR_HOST_ROUTE}, set()),
    "block-local-near": ({NEAR_HOST_ROUTE}, {("VETH-NET-LOW", "10.8.0.1", "tun")}),
    "ipv6": ({("::/3", "", "tun"), ("2000::/4", "", "tun"), ("fc00::/7", "", "tun")}, set()),
}


def _routes(pair: NetnsPair, ns: str, veth: str, far: str = "") -> Table:
    """(dst, gateway, device) with the pair's random veth addresses named GATEWAY / VETH-NET /
    FAR (the server's own address when it listens behind the gateway)."""
    halves = [str(half) for half in pair.subnet.subnets(prefixlen_diff=1)]
    names = {**({far: "FAR"} if far else {}), str(pair.addr_a): "GATEWAY",
             str(pair.subnet): "VETH-NET", halves[0]: "VETH-NET-LOW", halves[1]: "VETH-NET-HIGH"}
    out = json.loads(pair.run(ns, "ip", "-j", "-4", "route", "show", check=True).stdout)
    out += [route for route in
            json.loads(pair.run(ns, "ip", "-j", "-6", "route", "show", check=True).stdout)
            if not route["dst"].startswith(("fe80", "ff00")) and route.get("type") != "local"
            and route.get("protocol") != "kernel"]
    table = set()
    for route in out:
        dev = route.get("dev", "")
        dst, gateway = route["dst"], route.get("gateway", "")
        table.add((names.get(dst, dst), names.get(gateway, gateway),
                   "veth" if dev == veth else "tun" if dev.startswith("tun") else dev))
    return table


def _client_routes(kind: str, variant: str, workdir: Path) -> tuple[Table, Table]:
    """(the client namespace's routes while the tunnel is up, and after the client exited)."""
    extra, server_extra, far = VARIANTS[variant]
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        pair.run(pair.ns_b, "ip", "route", "add", "default", "via", str(pair.addr_a), check=True)
        remote = str(pair.addr_a)
        if far:  # an address of the server's namespace outside the client's subnet
            remote = str(pair.new_subnet()[1])
            pair.run(pair.ns_a, "ip", "addr", "add", f"{remote}/32", "dev", "lo", check=True)
        far_name = remote if far else ""
        before = _routes(pair, pair.ns_b, pair.veth_b, far_name)
        fill = {"remote": remote, "local": remote}
        server_text = render((PAIRS_DIR / "openvpn-sample" / "server.conf").read_text(),
                             materials, **fill) + SERVER_EXTRA + server_extra
        if far:
            server_text += f"local {remote}\n"
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
                up = _routes(pair, pair.ns_b, pair.veth_b, far_name)
            finally:
                client.stop()
            after = _routes(pair, pair.ns_b, pair.veth_b, far_name)
            assert after == before, (
                f"{kind} client left the table changed: gone {sorted(before - after)}, "
                f"new {sorted(after - before)}\n{client.describe()}")
            return up, after
        finally:
            server.stop()


def _diff(stock: Table, ours: Table) -> str:
    return f"only stock: {sorted(stock - ours)}, only ours: {sorted(ours - stock)}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_client_routes_match_stock(variant: str, workdir: Path) -> None:
    stock, _ = _client_routes("stock", variant, workdir / "stock")
    ours, _ = _client_routes("ours", variant, workdir / "ours")
    redirected = {("0.0.0.0/1", "10.8.0.1", "tun"), ("default", "10.8.0.1", "tun")}
    assert redirected & stock or variant == "route-nopull", stock
    present, absent = EXPECTED.get(variant, (set(), set()))
    assert present <= stock and not absent & stock, sorted(stock)
    assert ours == stock, _diff(stock, ours)
