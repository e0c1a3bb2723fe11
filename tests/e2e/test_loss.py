"""A lossy link between our peer and the stock one: 20 % of the UDP datagrams in each direction
are dropped by an nft rule (`numgen random`) in the client's namespace. The control channel's
reliability layer must still complete the handshake (retransmits, ACKs that are themselves lost),
and data must flow.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.interop import tunnel_up, warm_up
from tests.e2e.openvpn_peer import Pki, ping
from tests.netns import NetnsPair

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
    _drop_udp_randomly(pair, pair.ns_b, LOSS_PERCENT)
    with tunnel_up(pair, tmp_path, pki, kinds=DIRECTIONS[direction], cipher="AES-256-GCM",
                   client_up_timeout=UP_TIMEOUT) as tunnel:
        # Data before both sides installed keys is dropped by design: wait for one echo.
        warm_up(tunnel, timeout=30)
        to_server = ping(pair, pair.ns_b, tunnel.server_addr, count=PINGS)
        to_client = ping(pair, pair.ns_a, tunnel.client_addr, count=PINGS)
        print(f"\n{direction}, {LOSS_PERCENT} % loss each way: echo replies/requests "
              f"c->s {to_server.received}/{to_server.sent}, "
              f"s->c {to_client.received}/{to_client.sent}")
        assert to_server.received == PINGS, to_server.output
        assert to_client.received == PINGS, to_client.output
        errors = STOCK_ERRORS.findall(tunnel.stock().log())
        assert not errors, tunnel.stock().describe()
