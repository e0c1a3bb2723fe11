"""Interop with the stock `openvpn` 2.6 over TCP (`proto tcp-server` / `proto tcp-client`).

The same configs as test_interop_openvpn.py (harness: interop.py) with one more line each, in
both roles and with both AEAD ciphers: ping both ways, a short iperf3, and a renegotiation
(`reneg-sec 5` on the stock side) while iperf3 runs. Over TCP a lost packet cannot be hidden by
the tunnel, so any stall or decrypt error shows as a failed ping, a 0-byte iperf3 interval or a
stock log error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.interop import (
    CIPHERS,
    DIRECTIONS,
    MIN_MBIT_PER_S,
    SOFT_RESET,
    assert_clean_stock_log,
    iperf3_through,
    ping_both_ways,
    record,
    tunnel_up,
    warm_up,
)
from tests.e2e.openvpn_peer import Pki, ping
from tests.netns import NetnsPair

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping, pytest.mark.iperf3]

SERVER_TCP = ["proto tcp4-server"]
CLIENT_TCP = ["proto tcp4-client"]
IPERF_SECONDS = 2
RENEG_SEC = 5
RENEG_IPERF_SECONDS = 8


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_tcp_ping_and_iperf3(netns_pair: NetnsPair, tmp_path: Path, pki: Pki, direction: str,
                             cipher: str) -> None:
    with tunnel_up(netns_pair, tmp_path, pki, kinds=DIRECTIONS[direction], cipher=cipher,
                   server_extra=SERVER_TCP, client_extra=CLIENT_TCP) as tunnel:
        warm_up(tunnel)
        pings = ping_both_ways(tunnel)
        result = iperf3_through(tunnel, tmp_path, IPERF_SECONDS)
        assert result.mbit_per_s > MIN_MBIT_PER_S, result
        tunnel.assert_running()
        stock_log = tunnel.stock().log()
        assert f"Data Channel: cipher '{cipher}'" in stock_log
        assert "TCP" in stock_log  # it really ran over TCP (stock logs the TCP link)
        assert_clean_stock_log(tunnel)
    record(f"tcp-{direction}", cipher, result, pings)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_tcp_renegotiation_during_traffic(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                                          direction: str) -> None:
    kinds = DIRECTIONS[direction]
    stock_is_server = kinds[0] == "stock"
    reneg = [f"reneg-sec {RENEG_SEC}"]
    with tunnel_up(netns_pair, tmp_path, pki, kinds=kinds, cipher="AES-256-GCM",
                   server_extra=SERVER_TCP + (reneg if stock_is_server else []),
                   client_extra=CLIENT_TCP + ([] if stock_is_server else reneg)) as tunnel:
        warm_up(tunnel)
        result = iperf3_through(tunnel, tmp_path, RENEG_IPERF_SECONDS)
        pings = ping_both_ways(tunnel)
        tunnel.assert_running()
        stock_log = tunnel.stock().log()
        soft_resets = len(SOFT_RESET.findall(stock_log))
        stalled = [i for i, sent in enumerate(result.interval_bytes) if sent == 0]
        assert not stalled, f"0-byte intervals {stalled}: {result.interval_bytes}"
        assert soft_resets >= 1, stock_log
        assert result.mbit_per_s > MIN_MBIT_PER_S, result
        assert_clean_stock_log(tunnel)
    record(f"tcp-{direction}-reneg{RENEG_SEC}", "AES-256-GCM", result, pings,
           extra=f", {soft_resets} soft resets")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_tcp6_underlay(netns_pair: NetnsPair, tmp_path: Path, pki: Pki, direction: str) -> None:
    """`proto tcp6-server` / `tcp6-client` over the IPv6 underlay: up, ping crosses."""
    pair = netns_pair
    with tunnel_up(pair, tmp_path, pki, kinds=DIRECTIONS[direction], cipher="AES-256-GCM",
                   server_extra=["proto tcp6-server"], client_extra=["proto tcp6-client"],
                   underlay6=True) as tunnel:
        warm_up(tunnel)
        result = ping(pair, pair.ns_b, tunnel.server_addr, count=3)
        assert result.received == 3, result.output
        assert "AF_INET6" in tunnel.stock().log(), tunnel.stock().log()
