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
    assert_clean_stock_log,
    iperf3_through,
    ping_both_ways,
    record,
    tunnel_up,
    warm_up,
)
from tests.netns import NetnsPair

pytestmark = [pytest.mark.root, pytest.mark.openvpn]

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
