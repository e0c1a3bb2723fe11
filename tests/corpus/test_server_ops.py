"""Server operations against a stock client, our server beside stock's (issue 11 item 4).

The openvpn-sample server, plus `crl-verify crl.pem` (revoking client "revoked"),
`client-config-dir ccd` with a file for "client" (`ifconfig-push 10.8.0.77 255.255.255.0`),
`ifconfig-pool-persist ipp.txt 1`: the certificate client gets its ccd address and pings; the
revoked client is refused (never up) while the server keeps running; a DEFAULT-less client
without a ccd file gets a pool address, which lands in ipp.txt in stock's format.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.corpus.materials import make_materials, prepare, render
from tests.corpus.test_corpus import PAIRS_DIR, _server_network, _start, workdir
from tests.e2e.openvpn_peer import PeerFailed, ping, tun_address
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn]
__all__ = ["workdir"]

SERVER_EXTRA = "crl-verify crl.pem\nclient-config-dir ccd\nifconfig-pool-persist ipp.txt 1\n"


@pytest.mark.parametrize("server_kind", ["stock", "ours"])
def test_crl_ccd_and_pool_persist(server_kind: str, workdir: Path) -> None:
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        fill = {"remote": str(pair.addr_a), "local": str(pair.addr_a)}
        server_text = render((PAIRS_DIR / "openvpn-sample" / "server.conf").read_text(),
                             materials, **fill) + SERVER_EXTRA
        client_text = render((PAIRS_DIR / "openvpn-sample" / "client.ovpn").read_text(),
                             materials, **fill)
        network = _server_network(server_text)
        server_dir = workdir / "server"
        prepare(server_dir, materials)
        (server_dir / "ccd" / "client").write_text("ifconfig-push 10.8.0.77 255.255.255.0\n")
        (server_dir / "server.conf").write_text(server_text)
        server = _start(pair, pair.ns_a, server_kind, "server", server_dir / "server.conf")
        try:
            server.wait_up()
            # 1. the revoked certificate is refused, and the server stays up.
            revoked_dir = workdir / "revoked"
            prepare(revoked_dir, materials)
            (revoked_dir / "client.ovpn").write_text(
                client_text.replace("cert client.crt", "cert revoked.crt")
                .replace("key client.key", "key revoked.key"))
            revoked = _start(pair, pair.ns_b, "stock", "client", revoked_dir / "client.ovpn")
            with pytest.raises(PeerFailed):
                revoked.wait_up(8)
            revoked.stop()
            server.assert_running()
            log = server.log().lower()
            assert "revoked" in log, server.describe()
            # 2. the good client gets the ccd address.
            client_dir = workdir / "client"
            prepare(client_dir, materials)
            (client_dir / "client.ovpn").write_text(client_text)
            client = _start(pair, pair.ns_b, "stock", "client", client_dir / "client.ovpn")
            try:
                client.wait_up()
                assert str(tun_address(pair, pair.ns_b, network)) == "10.8.0.77"
                assert wait_for(lambda: ping(pair, pair.ns_b, network[1], count=1).ok, 15, 0.2)
            finally:
                client.stop()
            # 3. without a ccd file: a pool address, persisted as "CN,IPv4," (stock's format).
            (server_dir / "ccd" / "client").unlink()
            again_dir = workdir / "again"  # a fresh log: wait_up looks for its first INIT line
            prepare(again_dir, materials)
            (again_dir / "client.ovpn").write_text(client_text)
            client = _start(pair, pair.ns_b, "stock", "client", again_dir / "client.ovpn")
            try:
                client.wait_up()
                address = tun_address(pair, pair.ns_b, network)
                assert wait_for(lambda: f"client,{address},"
                                in (server_dir / "ipp.txt").read_text(), 10, 0.2), \
                    (server_dir / "ipp.txt").read_text()
            finally:
                client.stop()
            time.sleep(0.2)
            server.assert_running()
        finally:
            server.stop()


@pytest.mark.parametrize("topology", ["net30", "p2p"])
@pytest.mark.parametrize(("server_kind", "client_kind"),
                         [("stock", "stock"), ("ours", "stock"), ("stock", "ours")])
def test_topology_net30_and_p2p(topology: str, server_kind: str, client_kind: str,
                                workdir: Path) -> None:
    """The sample server with `topology net30|p2p`: the client gets what stock's pool gives
    (net30: 10.8.0.6 with peer .5; p2p: 10.8.0.4) and pings the server's 10.8.0.1."""
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        fill = {"remote": str(pair.addr_a), "local": str(pair.addr_a)}
        server_text = render((PAIRS_DIR / "openvpn-sample" / "server.conf").read_text(),
                             materials, **fill).replace("topology subnet", f"topology {topology}")
        client_text = render((PAIRS_DIR / "openvpn-sample" / "client.ovpn").read_text(),
                             materials, **fill)
        network = _server_network(server_text)
        server_dir, client_dir = workdir / "server", workdir / "client"
        for directory in (server_dir, client_dir):
            prepare(directory, materials)
        (server_dir / "server.conf").write_text(server_text)
        (client_dir / "client.ovpn").write_text(client_text)
        server = _start(pair, pair.ns_a, server_kind, "server", server_dir / "server.conf")
        try:
            server.wait_up()
            client = _start(pair, pair.ns_b, client_kind, "client", client_dir / "client.ovpn")
            try:
                client.wait_up()
                expected = "10.8.0.6" if topology == "net30" else "10.8.0.4"
                assert str(tun_address(pair, pair.ns_b, network)) == expected
                assert wait_for(lambda: ping(pair, pair.ns_b, network[1], count=1).ok, 15, 0.2), \
                    f"{server.describe()}\n\n{client.describe()}"
            finally:
                client.stop()
        finally:
            server.stop()


@pytest.mark.parametrize("server_kind", ["stock", "ours"])
def test_crl_file_removed_while_running_keeps_the_last_crl(server_kind: str,
                                                           workdir: Path) -> None:
    """crl.pem deleted after the start: stock warns "Failed to stat CRL file, not reloading
    CRL." and keeps the CRL it read, so the revoked client stays out and the good one gets in;
    a server started without the file does not start at all."""
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        fill = {"remote": str(pair.addr_a), "local": str(pair.addr_a)}
        server_text = render((PAIRS_DIR / "openvpn-sample" / "server.conf").read_text(),
                             materials, **fill) + "crl-verify crl.pem\n"
        client_text = render((PAIRS_DIR / "openvpn-sample" / "client.ovpn").read_text(),
                             materials, **fill)
        server_dir = workdir / "server"
        prepare(server_dir, materials)
        (server_dir / "server.conf").write_text(server_text)
        server = _start(pair, pair.ns_a, server_kind, "server", server_dir / "server.conf")
        try:
            server.wait_up()
            (server_dir / "crl.pem").unlink()
            revoked_dir = workdir / "revoked"
            prepare(revoked_dir, materials)
            (revoked_dir / "client.ovpn").write_text(
                client_text.replace("cert client.crt", "cert revoked.crt")
                .replace("key client.key", "key revoked.key"))
            revoked = _start(pair, pair.ns_b, "stock", "client", revoked_dir / "client.ovpn")
            with pytest.raises(PeerFailed):
                revoked.wait_up(8)
            revoked.stop()
            assert "Failed to stat CRL file, not reloading CRL" in server.log(), \
                server.describe()
            client_dir = workdir / "client"
            prepare(client_dir, materials)
            (client_dir / "client.ovpn").write_text(client_text)
            client = _start(pair, pair.ns_b, "stock", "client", client_dir / "client.ovpn")
            try:
                client.wait_up()
            finally:
                client.stop()
            server.assert_running()
        finally:
            server.stop()
        # Started without it: no server.
        again = _start(pair, pair.ns_a, server_kind, "server", server_dir / "server.conf")
        assert wait_for(lambda: again.proc.poll() is not None, 15, 0.1), again.describe()
        assert again.proc.returncode != 0
        assert re.search(r"Failed to stat CRL file|cannot read the CRL file", again.log()), \
            again.describe()
