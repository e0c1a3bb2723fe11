"""client-to-client end to end (issue 11 item 4): two clients of one server reach each other
through it only when the server says so.

The openvpn-sample server (stock's or ours) in `ns_a`; a stock client in `ns_b` and our client
in a third namespace joined to `ns_a` by its own veth. With `client-to-client` each client
pings the other's tunnel address (the server relays inside the VPN process); without it the
packets go up the server's TUN device, where its namespace does not forward them (the test
sets ip_forward=0 there), so no echo comes back, from either side.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tests.corpus.materials import make_materials, prepare, render
from tests.corpus.test_corpus import PAIRS_DIR, _server_network, _start, workdir
from tests.e2e.openvpn_peer import ping, tun_address
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping]
__all__ = ["workdir"]


@pytest.mark.parametrize("server_kind", ["stock", "ours"])
@pytest.mark.parametrize("relay", [True, False], ids=["client-to-client", "off"])
def test_two_clients(server_kind: str, relay: bool, workdir: Path) -> None:
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        # the server's namespace does not route (a namespace may inherit ip_forward=1)
        pair.run(pair.ns_a, "sysctl", "-qw", "net.ipv4.ip_forward=0", check=True)
        ns_c, server_c, _ = pair.add_namespace()
        server_text = render((PAIRS_DIR / "openvpn-sample" / "server.conf").read_text(),
                             materials, remote=str(pair.addr_a), local=str(pair.addr_a))
        server_text += "client-to-client\n" if relay else ""
        server_text += "duplicate-cn\n"  # both clients use the sample's one certificate
        network = _server_network(server_text)
        server_dir = workdir / "server"
        prepare(server_dir, materials)
        (server_dir / "server.conf").write_text(server_text)
        clients = []
        server = _start(pair, pair.ns_a, server_kind, "server", server_dir / "server.conf")
        try:
            server.wait_up()
            for ns, kind, remote in ((pair.ns_b, "stock", pair.addr_a),
                                     (ns_c, "ours", server_c)):
                directory = workdir / f"client-{kind}"
                prepare(directory, materials)
                (directory / "client.ovpn").write_text(render(
                    (PAIRS_DIR / "openvpn-sample" / "client.ovpn").read_text(), materials,
                    remote=str(remote), local=str(remote)))
                clients.append((ns, _start(pair, ns, kind, "client", directory / "client.ovpn")))
            addresses: list[ipaddress.IPv4Address] = []
            for ns, client in clients:
                client.wait_up()
                addresses.append(tun_address(pair, ns, network))
                # each one reaches the server in any case
                assert wait_for(lambda ns=ns: ping(pair, ns, network[1], count=1).ok, 15, 0.2), \
                    client.describe()
            logs = "\n\n".join(c.describe() for _, c in [(None, server), *clients])
            for (ns, _client), target in zip(clients, reversed(addresses), strict=True):
                if relay:
                    assert wait_for(lambda ns=ns, t=target: ping(pair, ns, t, count=1).ok,
                                    15, 0.2), f"{ns} -> {target}: no echo\n{logs}"
                    result = ping(pair, ns, target, count=3)
                    assert result.received == 3, f"{result.output}\n{logs}"
                else:
                    result = ping(pair, ns, target, count=3)
                    assert result.received == 0, f"{ns} -> {target} crossed\n{logs}"
            server.assert_running()
        finally:
            for _, client in clients:
                client.stop()
            server.stop()
