"""Interop with the stock `openvpn` 2.6 binary: each side of the tunnel played by one of us.

Every case builds two fresh namespaces joined by a veth (tests/netns.py), runs the server in
`ns_a` and the client in `ns_b`, both from the same OpenVPN config text (openvpn_peer.py), and
then checks what a user would: ping both ways through the tunnel, and a TCP iperf3 run from the
client's namespace to the server's tunnel address that completes at a non-trivial rate.
The renegotiation cases run the stock side with `reneg-sec 10` and a 25-second iperf3, and
require every 1-second iperf3 interval to have carried data (no stall across a key change)
and the stock log to show the soft resets.

Rates are printed (`pytest -s`) and, when TUNNEL_E2E_RESULTS names a file, appended to it.
Logs of both peers stay in the test's tmp_path; a failure message carries their tails.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from tests.e2e.interop import (
    CIPHERS,
    DIRECTIONS,
    IPERF_SECONDS,
    MIN_MBIT_PER_S,
    PING_COUNT,
    RENEG_IPERF_SECONDS,
    RENEG_MIN_SOFT_RESETS,
    RENEG_SEC,
    SOFT_RESET,
    STOCK_ERRORS,
    TLS_HANDSHAKE,
    assert_clean_stock_log,
    iperf3_through,
    ping_both_ways,
    ping_both_ways_captured,
    record,
    tunnel_up,
    warm_up,
)
from tests.e2e.openvpn_peer import P_DATA_V2, TO_CLIENT, TO_SERVER, Pki, ping
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping]

# -- the harness itself, against the reference ------------------------------------------------


@pytest.mark.iperf3
def test_harness_with_stock_on_both_sides(netns_pair: NetnsPair, tmp_path: Path,
                                          pki: Pki) -> None:
    """Not a product test: stock client against stock server through this module's helpers.

    When an interop case fails, this one passing says the configs, PKI, namespaces, ping and
    iperf3 plumbing are fine and the fault is on our side.
    """
    kinds = ("stock", "stock")
    with tunnel_up(netns_pair, tmp_path, pki, kinds=kinds, cipher="AES-256-GCM") as tunnel:
        warm_up(tunnel)
        pings = ping_both_ways(tunnel)
        result = iperf3_through(tunnel, tmp_path, seconds=2)
        assert result.mbit_per_s > MIN_MBIT_PER_S
        tunnel.assert_running()
        for peer in tunnel.peers():
            assert "Data Channel: cipher 'AES-256-GCM'" in peer.log()
            bad = [line for line in peer.log().splitlines() if STOCK_ERRORS.search(line)]
            assert not bad, bad
    record("stock-client-to-stock-server(harness)", "AES-256-GCM", result, pings)


# -- interop ------------------------------------------------------------------------------------


@pytest.mark.iperf3
@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_ping_and_iperf3(netns_pair: NetnsPair, tmp_path: Path, pki: Pki, direction: str,
                         cipher: str) -> None:
    with tunnel_up(netns_pair, tmp_path, pki, kinds=DIRECTIONS[direction],
                   cipher=cipher) as tunnel:
        warm_up(tunnel)
        pings, capture = ping_both_ways_captured(tunnel)
        # Both peers announce DATA_V2, so the server pushes a peer-id and both send P_DATA_V2;
        # no renegotiation yet: everything on the first key.
        for way in (TO_SERVER, TO_CLIENT):
            assert capture.opcodes(way) == {P_DATA_V2}, capture
            assert capture.key_ids(way) == {0}, capture
        result = iperf3_through(tunnel, tmp_path, IPERF_SECONDS)
        assert result.seconds >= IPERF_SECONDS - 0.5, result
        assert result.mbit_per_s > MIN_MBIT_PER_S, result
        tunnel.assert_running()
        # The stock side reports the negotiated cipher: the one both configs allow.
        assert f"Data Channel: cipher '{cipher}'" in tunnel.stock().log()
        assert_clean_stock_log(tunnel)
    record(direction, cipher, result, pings)


@pytest.mark.iperf3
@pytest.mark.timeout(150)
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_iperf3_across_stock_renegotiations(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                                            direction: str) -> None:
    """`reneg-sec 10` on the stock side: two soft resets during 25 s of TCP, no stalled second."""
    kinds = DIRECTIONS[direction]
    reneg = [f"reneg-sec {RENEG_SEC}"]
    stock_is_server = kinds[0] == "stock"
    cipher = "AES-256-GCM"
    with tunnel_up(netns_pair, tmp_path, pki, kinds=kinds, cipher=cipher,
                   server_extra=reneg if stock_is_server else (),
                   client_extra=() if stock_is_server else reneg) as tunnel:
        warm_up(tunnel)
        pings = ping_both_ways(tunnel)
        result = iperf3_through(tunnel, tmp_path, RENEG_IPERF_SECONDS)
        tunnel.assert_running()
        # After two soft resets key 0 has left the lame-duck slot on the stock side: a peer
        # still encrypting with it would be dropped. Both directions must be on later keys.
        _, capture = ping_both_ways_captured(tunnel)
        for way in (TO_SERVER, TO_CLIENT):
            assert 0 not in capture.key_ids(way), (way, capture)
        stock_log = tunnel.stock().log()
        soft_resets = len(SOFT_RESET.findall(stock_log))
        handshakes = len(TLS_HANDSHAKE.findall(stock_log))
        stalled = [i for i, sent in enumerate(result.interval_bytes) if sent == 0]
        assert not stalled, (f"iperf3 intervals with 0 bytes: {stalled} of "
                             f"{result.interval_bytes}\n{tunnel.logs()}")
        assert result.seconds >= RENEG_IPERF_SECONDS - 0.5, result
        assert result.mbit_per_s > MIN_MBIT_PER_S, result
        # The stock side initiated each soft reset (it logs "TLS: soft reset sec=10/10 ...")
        # and completed a TLS handshake for each (one "Control Channel: TLSv1.3" line per key).
        assert soft_resets >= RENEG_MIN_SOFT_RESETS, f"{soft_resets} soft resets\n{stock_log}"
        assert handshakes >= 1 + RENEG_MIN_SOFT_RESETS, f"{handshakes} handshakes\n{stock_log}"
        assert_clean_stock_log(tunnel)
    record(f"{direction}-reneg{RENEG_SEC}", cipher, result, pings,
           extra=f", {soft_resets} soft resets, min interval "
                 f"{min(result.interval_bytes) * 8 / 1e6:.1f} Mbit, data key_ids after: "
                 f"to server {sorted(capture.key_ids(TO_SERVER))} "
                 f"to client {sorted(capture.key_ids(TO_CLIENT))}")


@pytest.mark.root
@pytest.mark.openvpn
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_ipv6_inside_the_tunnel_with_server_ipv6(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                                                 direction: str) -> None:
    """`server-ipv6` on the server: the pushed `ifconfig-ipv6` is applied and ping6 crosses."""
    pair = netns_pair
    prefix = pair.new_subnet6()
    server6 = prefix[1]
    with tunnel_up(pair, tmp_path, pki, kinds=DIRECTIONS[direction], cipher="AES-256-GCM",
                   server_extra=[f"server-ipv6 {prefix}"]) as tunnel:
        warm_up(tunnel)
        # The client's IPv6 address, as the kernel has it on the client's tun device.
        def client6() -> ipaddress.IPv6Address | None:
            out = pair.run(pair.ns_b, "ip", "-6", "-o", "addr", "show", "scope", "global").stdout
            for match in re.finditer(r"inet6 ([0-9a-f:]+)/", out):
                address = ipaddress.IPv6Address(match.group(1))
                if address in prefix:
                    return address
            return None

        assert wait_for(lambda: client6() is not None, 15, 0.2), tunnel.logs()
        address = client6()
        assert address is not None and address != server6
        assert wait_for(lambda: ping(pair, pair.ns_b, server6, count=1).ok, 15, 0.2), (
            tunnel.logs())
        to_server = ping(pair, pair.ns_b, server6, count=PING_COUNT)
        to_client = ping(pair, pair.ns_a, address, count=PING_COUNT)
        assert to_server.received == PING_COUNT and to_client.received == PING_COUNT, (
            f"{to_server.output}\n{to_client.output}\n{tunnel.logs()}")
        assert_clean_stock_log(tunnel)
