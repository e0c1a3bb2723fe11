"""A lossy link between our peer and the stock one: 20 % of the UDP datagrams in each direction
are dropped by an nft rule (`numgen random`) in the client's namespace. The control channel's
reliability layer must still complete the handshake (retransmits, ACKs that are themselves lost),
and data must flow.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from tests.e2e.openvpn_peer import (
    Pki,
    client_config,
    make_pki,
    ping,
    server_config,
    start_peer,
    tun_address,
)
from tests.netns import NetnsPair, netns_pair_fixture, wait_for  # noqa: F401  (netns_pair)

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.nft, pytest.mark.ping]

LOSS_PERCENT = 20
# Retransmits back off 2, 4, 8 s: a handshake through 20 % loss normally takes a few seconds,
# rarely more than 30; hand-window (60 s) is the protocol's own limit.
UP_TIMEOUT = 90.0
PINGS = 20
# Each echo crosses the lossy link twice, so about 64 % come back; `ping -w` keeps sending until
# it has PINGS replies or its deadline (PINGS + 5 s) passes, which ~31 requests 0.2 s apart meet.

STOCK_ERRORS = re.compile(r"AEAD Decrypt error|TLS Error|key IDs out of sync|bad packet ID")

DIRECTIONS = {
    "stock client -> our server": ("ours", "stock"),
    "our client -> stock server": ("stock", "ours"),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _drop_udp_randomly(pair: NetnsPair, ns: str, percent: int) -> None:
    """Drop `percent` % of UDP packets entering and leaving `ns` (the tunnel's outer packets)."""
    table = "tunnel_loss"
    commands = [
        ["nft", "add", "table", "inet", table],
        ["nft", "add", "chain", "inet", table, "in",
         "{ type filter hook input priority 0 ; }"],
        ["nft", "add", "chain", "inet", table, "out",
         "{ type filter hook output priority 0 ; }"],
    ]
    for chain in ("in", "out"):
        commands.append(["nft", "add", "rule", "inet", table, chain, "meta", "l4proto", "udp",
                         "numgen", "random", "mod", "100", "<", str(percent), "drop"])
    for argv in commands:
        result = pair.run(ns, *argv, timeout=10)
        assert result.returncode == 0, f"{argv}: {result.stderr}"


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_handshake_and_data_through_a_lossy_link(netns_pair: NetnsPair, tmp_path: Path,
                                                 pki: Pki, direction: str) -> None:
    pair = netns_pair
    server_kind, client_kind = DIRECTIONS[direction]
    _drop_udp_randomly(pair, pair.ns_b, LOSS_PERCENT)
    subnet = pair.new_subnet()
    server_text = server_config(pki=pki, local=pair.addr_a, subnet=subnet,
                                cipher="AES-256-GCM")
    client_text = client_config(pki=pki, remote=pair.addr_a, cipher="AES-256-GCM")
    with start_peer(pair, pair.ns_a, kind=server_kind, role="server", config_text=server_text,
                    workdir=tmp_path) as server:
        server.wait_up()
        with start_peer(pair, pair.ns_b, kind=client_kind, role="client",
                        config_text=client_text, workdir=tmp_path) as client:
            client.wait_up(timeout=UP_TIMEOUT)
            server_addr = subnet[1]
            client_addr = tun_address(pair, pair.ns_b, subnet)
            assert isinstance(client_addr, ipaddress.IPv4Address)
            # Data before both sides installed keys is dropped by design: wait for one echo.
            assert wait_for(lambda: ping(pair, pair.ns_b, server_addr, count=1).ok, 30, 0.2), (
                f"{server.describe()}\n{client.describe()}")
            to_server = ping(pair, pair.ns_b, server_addr, count=PINGS)
            to_client = ping(pair, pair.ns_a, client_addr, count=PINGS)
            print(f"\n{direction}, {LOSS_PERCENT} % loss each way: echo replies/requests "
                  f"c->s {to_server.received}/{to_server.sent}, "
                  f"s->c {to_client.received}/{to_client.sent}")
            assert to_server.received == PINGS, to_server.output
            assert to_client.received == PINGS, to_client.output
            stock = server if server_kind == "stock" else client
            errors = STOCK_ERRORS.findall(stock.log())
            assert not errors, stock.describe()
