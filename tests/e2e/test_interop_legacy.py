"""Interop with stock `openvpn` 2.6 for what older configs use (issue 11): CBC + HMAC data
channels and cipher negotiation corner cases, each in both roles.

Short on purpose: ping both ways and a 2-second iperf3 per case. The harness case (stock on both
sides) for each feature says whether a failure is ours or the config's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.e2e.openvpn_peer import Pki, make_pki
from tests.e2e.test_interop_openvpn import (
    DIRECTIONS,
    MIN_MBIT_PER_S,
    Tunnel,
    assert_clean_stock_log,
    iperf3_through,
    ping_both_ways,
    record,
    tunnel_up,
    warm_up,
)
from tests.netns import NetnsPair

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping, pytest.mark.iperf3]

IPERF_SECONDS = 2
ALL_KINDS = {**DIRECTIONS, "stock-client-to-stock-server": ("stock", "stock")}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def run_case(
    pair: NetnsPair, workdir: Path, pki: Pki, direction: str, *, cipher: str,
    expect: str, server_extra: Sequence[str] = (), client_extra: Sequence[str] = (),
    server_cipher: str | None = None, label: str = "",
) -> None:
    kinds = ALL_KINDS[direction]
    with tunnel_up(pair, workdir, pki, kinds=kinds, cipher=cipher,
                   server_extra=[*(
                       [f"data-ciphers {server_cipher}"] if server_cipher else []), *server_extra],
                   client_extra=client_extra) as tunnel:
        warm_up(tunnel)
        pings = ping_both_ways(tunnel)
        result = iperf3_through(tunnel, workdir, IPERF_SECONDS)
        assert result.mbit_per_s > MIN_MBIT_PER_S, result
        tunnel.assert_running()
        for peer in tunnel.peers():
            if peer.label.startswith("stock"):
                assert f"Data Channel: cipher '{expect}'" in peer.log(), peer.describe()
        assert_clean_stock_log(tunnel)
    record(direction, f"{expect}{label}", result, pings)


CBC_CASES = [
    pytest.param("AES-256-CBC", "SHA1", id="aes256cbc-sha1"),
    pytest.param("AES-128-CBC", "SHA256", id="aes128cbc-sha256"),
    pytest.param("AES-256-CBC", "SHA512", id="aes256cbc-sha512"),
]


@pytest.mark.parametrize(("cipher", "auth"), CBC_CASES)
@pytest.mark.parametrize("direction", list(ALL_KINDS))
def test_cbc_negotiated(netns_pair: NetnsPair, tmp_path: Path, pki: Pki, direction: str,
                        cipher: str, auth: str) -> None:
    """`data-ciphers AES-x-CBC` + `auth DIGEST` on both sides: NCP picks the CBC cipher."""
    extra = [f"auth {auth}"]
    run_case(netns_pair, tmp_path, pki, direction, cipher=cipher, expect=cipher,
             server_extra=extra, client_extra=extra, label=f"/{auth}")


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_cbc_with_a_compat_mode_2_3_peer(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                                         direction: str) -> None:
    """The stock peer runs `--compat-mode 2.3.0` with `data-ciphers-fallback AES-256-CBC`
    (stock then adds the fallback to its data-ciphers, options.c), our side only allows
    AES-256-CBC: the negotiation lands on AES-256-CBC in both roles."""
    stock_side = ["compat-mode 2.3.0", "data-ciphers AES-256-GCM",
                  "data-ciphers-fallback AES-256-CBC"]
    ours = ["data-ciphers-fallback AES-256-CBC"]
    stock_is_server = DIRECTIONS[direction][0] == "stock"
    run_case(netns_pair, tmp_path, pki, direction, cipher="AES-256-CBC", expect="AES-256-CBC",
             server_extra=stock_side if stock_is_server else ours,
             client_extra=ours if stock_is_server else stock_side, label=" compat-mode 2.3.0")


# -- compression framing ------------------------------------------------------------------------


def big_ping(tunnel: Tunnel, pair: NetnsPair, ns: str, address: object) -> None:
    """A compressible 600-byte echo (stock with allow-compression yes compresses it)."""
    result = pair.run(ns, "ping", "-c", "3", "-i", "0.3", "-W", "3", "-s", "600",
                      "-p", "61626364", str(address))
    assert result.returncode == 0, f"{result.stdout}\n{tunnel.logs()}"


COMPRESSION_CASES = {
    # both configs carry the option; the stock side also compresses what it sends
    "lz4-v2": (["compress lz4-v2"], ["compress lz4-v2"], "allow-compression yes"),
    "lz4": (["compress lz4"], ["compress lz4"], "allow-compression yes"),
    "comp-lzo": (["comp-lzo"], ["comp-lzo"], "allow-compression yes"),
    # the server frames as comp-lzo no and pushes it to a client that has no compression line
    "comp-lzo-no-pushed": (["comp-lzo no", 'push "comp-lzo no"'], [], ""),
    # the server pushes compress lz4-v2 to a client that allows decompression
    "lz4-v2-pushed": (["compress lz4-v2", 'push "compress lz4-v2"'],
                      ["allow-compression asym"], "allow-compression yes"),
}


@pytest.mark.parametrize("case", list(COMPRESSION_CASES))
@pytest.mark.parametrize("direction", list(ALL_KINDS))
def test_compression_framing(netns_pair: NetnsPair, tmp_path: Path, pki: Pki, direction: str,
                             case: str) -> None:
    server_lines, client_lines, stock_extra = COMPRESSION_CASES[case]
    server_kind, client_kind = ALL_KINDS[direction]
    def with_stock(lines: list[str], kind: str) -> list[str]:
        return [*lines, stock_extra] if stock_extra and kind == "stock" else list(lines)

    server_extra = with_stock(server_lines, server_kind)
    client_extra = with_stock(client_lines, client_kind)
    pair = netns_pair
    with tunnel_up(pair, tmp_path, pki, kinds=ALL_KINDS[direction], cipher="AES-256-GCM",
                   server_extra=server_extra, client_extra=client_extra) as tunnel:
        warm_up(tunnel)
        pings = ping_both_ways(tunnel)
        big_ping(tunnel, pair, pair.ns_b, tunnel.server_addr)
        big_ping(tunnel, pair, pair.ns_a, tunnel.client_addr)
        result = iperf3_through(tunnel, tmp_path, IPERF_SECONDS)
        assert result.mbit_per_s > MIN_MBIT_PER_S, result
        tunnel.assert_running()
        for peer in tunnel.peers():
            if peer.label.startswith("stock"):
                bad = [line for line in peer.log().splitlines()
                       if "decompression" in line.lower() or "Bad LZ4" in line
                       or "Bad compression" in line]
                assert not bad, bad
        assert_clean_stock_log(tunnel)
    record(direction, f"AES-256-GCM {case}", result, pings)
