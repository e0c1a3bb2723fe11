"""tls-auth and tls-crypt against the stock `openvpn` 2.6, in both roles.

Each case runs the interop harness of interop.py (two namespaces, one config text
for both implementations) with a control-channel wrap added to both configs, and the stock side
renegotiating every few seconds (`reneg-sec` short) while iperf3 runs: every soft reset crosses
the wrap too. Keys are made by the stock `openvpn --genkey`, so our reader is checked against
the stock writer (and test_genkey.py checks the other way round).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.interop import (
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
from tests.e2e.openvpn_peer import Pki
from tests.netns import NetnsPair
from tunnel.protocol.ekm import supported as ekm_supported

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping, pytest.mark.iperf3]

RENEG_SEC = 3
IPERF_SECONDS = 4  # spans at least one stock soft reset


@dataclass(frozen=True)
class WrapCase:
    name: str
    server: tuple[str, ...]
    client: tuple[str, ...]


def _inline(tag: str, key: Path) -> str:
    return f"<{tag}>\n{key.read_text()}</{tag}>"


def wrap_case(name: str, key: Path) -> WrapCase:
    if name == "tls-auth-keydir-sha1":
        return WrapCase(name, (f"tls-auth {key} 0",), (f"tls-auth {key} 1",))
    if name == "tls-auth-key-direction-inline-sha512":
        return WrapCase(
            name,
            ("auth SHA512", "key-direction 0", _inline("tls-auth", key)),
            ("auth SHA512", "key-direction 1", _inline("tls-auth", key)),
        )
    if name == "tls-auth-bidirectional-sha1":
        return WrapCase(name, (f"tls-auth {key}",), (f"tls-auth {key}",))
    if name == "tls-auth-no-direction-sha512":
        return WrapCase(name, (f"tls-auth {key}", "auth SHA512"),
                        (f"tls-auth {key}", "auth SHA512"))
    if name == "tls-crypt":
        return WrapCase(name, (f"tls-crypt {key}",), (f"tls-crypt {key}",))
    if name == "tls-crypt-inline":
        return WrapCase(name, (_inline("tls-crypt", key),), (_inline("tls-crypt", key),))
    raise ValueError(name)


CASES = [
    "tls-auth-keydir-sha1",
    "tls-auth-key-direction-inline-sha512",
    "tls-auth-bidirectional-sha1",
    "tls-crypt",
]  # (tls-auth-no-direction-sha512 and tls-crypt-inline exist for manual runs; CI time is short)


TLS_HANDSHAKE = re.compile(r"Control Channel: TLSv")


HANDSHAKE_WAIT = 20.0  # seconds a renegotiation that had started when the log was read may take


def assert_dynamic_tls_crypt(read_log: Callable[[], str], soft_resets: int) -> None:
    """Where we can export TLS keying material both sides announce 2.6's dynamic tls-crypt:
    stock derives the key ("Outgoing dynamic tls-crypt") and every renegotiation, wrapped
    with it, completes its handshake. The last soft reset counted may still be in flight when
    the log was first read (reneg-sec is short, the machine may be loaded): its handshake is
    given HANDSHAKE_WAIT seconds to complete."""
    stock_log = read_log()
    if not ekm_supported():
        assert "dynamic tls-crypt" not in stock_log
        return
    assert "Outgoing dynamic tls-crypt: Cipher 'AES-256-CTR'" in stock_log, stock_log
    deadline = time.monotonic() + HANDSHAKE_WAIT
    while len(TLS_HANDSHAKE.findall(stock_log)) < 1 + soft_resets and time.monotonic() < deadline:
        time.sleep(0.2)
        stock_log = read_log()
    assert len(TLS_HANDSHAKE.findall(stock_log)) >= 1 + soft_resets, stock_log


def stock_genkey(path: Path) -> Path:
    subprocess.run(["openvpn", "--genkey", "secret", str(path)], check=True,
                   capture_output=True, timeout=30)
    return path


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_wrap_interop(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                      direction: str, case: str) -> None:
    kinds = DIRECTIONS[direction]
    wrap = wrap_case(case, stock_genkey(tmp_path / "wrap.key"))
    stock_is_server = kinds[0] == "stock"
    reneg = (f"reneg-sec {RENEG_SEC}",)
    server_extra = wrap.server + (reneg if stock_is_server else ())
    client_extra = wrap.client + (() if stock_is_server else reneg)
    with tunnel_up(netns_pair, tmp_path, pki, kinds=kinds, cipher="AES-256-GCM",
                   server_extra=server_extra, client_extra=client_extra) as tunnel:
        warm_up(tunnel)
        pings = ping_both_ways(tunnel)
        result = iperf3_through(tunnel, tmp_path, IPERF_SECONDS)
        tunnel.assert_running()
        ping_both_ways(tunnel)  # still up after the key changes
        stock_log = tunnel.stock().log()
        soft_resets = len(SOFT_RESET.findall(stock_log))
        assert soft_resets >= 1, f"no soft reset during the run\n{tunnel.logs()}"
        assert result.mbit_per_s > MIN_MBIT_PER_S, result
        assert_clean_stock_log(tunnel)
        # The stock side really ran the wrap the case names (its startup lines, verb 4).
        if "crypt" in case:
            wrap_line = "Outgoing Control Channel Encryption: Cipher 'AES-256-CTR'"
        elif "sha512" in case:
            wrap_line = "Control Channel Authentication: Using 512 bit message hash 'SHA512'"
        else:
            wrap_line = "Control Channel Authentication: Using 160 bit message hash 'SHA1'"
        assert wrap_line in stock_log, stock_log
        assert_dynamic_tls_crypt(tunnel.stock().log, soft_resets)
    record(f"{direction}-{case}", "AES-256-GCM", result, pings,
           extra=f", {soft_resets} stock soft resets")


# -- tls-crypt-v2 ------------------------------------------------------------------------------

VERIFY_SCRIPT = """#!/bin/sh
# tls-crypt-v2-verify: refuse the client key whose user metadata is "mallory".
[ "$script_type" = tls-crypt-v2-verify ] || exit 2
[ "$metadata_type" = 0 ] || exit 3
[ "$(cat "$metadata_file")" = mallory ] && exit 1
exit 0
"""
V2_REFUSED_WAIT = 8.0  # seconds the refused client is given; it must not come up


def make_v2_keys(workdir: Path, server_maker: str, client_maker: str) -> tuple[Path, Path, Path]:
    """A server key and two client keys (metadata "alice", "mallory"), each made by stock
    (`openvpn --genkey`) or by us (`tunnel genkey`), so both readers meet both writers."""
    import base64
    import sys

    server = workdir / "v2-server.key"
    if server_maker == "stock":
        subprocess.run(["openvpn", "--genkey", "tls-crypt-v2-server", str(server)], check=True,
                       capture_output=True, timeout=30)
    else:
        subprocess.run([sys.executable, "-m", "tunnel", "genkey", "tls-crypt-v2-server",
                        str(server)], check=True, capture_output=True, timeout=30)
    clients = []
    for name in ("alice", "mallory"):
        path = workdir / f"v2-{name}.key"
        b64 = base64.b64encode(name.encode()).decode()
        if client_maker == "stock":
            argv = ["openvpn", "--tls-crypt-v2", str(server), "--genkey", "tls-crypt-v2-client",
                    str(path), b64]
        else:
            argv = [sys.executable, "-m", "tunnel", "genkey", "tls-crypt-v2-client", str(path),
                    "--server-key", str(server), "--metadata", b64]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
        clients.append(path)
    return server, clients[0], clients[1]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_tls_crypt_v2_interop(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                              direction: str) -> None:
    """tls-crypt-v2 with metadata and a verify script on the server that refuses one client;
    keys made by the implementation on the other side than the one that reads them."""
    from tests.e2e.openvpn_peer import INIT_DONE, client_config, start_peer
    from tests.netns import wait_for

    kinds = DIRECTIONS[direction]
    stock_is_server = kinds[0] == "stock"
    # The server's reader meets the other side's writer: stock server, our genkey, and back.
    maker = "ours" if stock_is_server else "stock"
    server_key, alice, mallory = make_v2_keys(tmp_path, maker, maker)
    script = tmp_path / "verify.sh"
    script.write_text(VERIFY_SCRIPT)
    script.chmod(0o755)
    reneg = (f"reneg-sec {RENEG_SEC}",)
    server_extra = (f"tls-crypt-v2 {server_key}", f"tls-crypt-v2-verify {script}",
                    "script-security 2") + (reneg if stock_is_server else ())
    client_extra = (f"tls-crypt-v2 {alice}",) + (() if stock_is_server else reneg)
    with tunnel_up(netns_pair, tmp_path, pki, kinds=kinds, cipher="AES-256-GCM",
                   server_extra=server_extra, client_extra=client_extra) as tunnel:
        warm_up(tunnel)
        pings = ping_both_ways(tunnel)
        result = iperf3_through(tunnel, tmp_path, IPERF_SECONDS)
        tunnel.assert_running()
        ping_both_ways(tunnel)
        stock_log = tunnel.stock().log()
        soft_resets = len(SOFT_RESET.findall(stock_log))
        assert soft_resets >= 1, f"no soft reset during the run\n{tunnel.logs()}"
        assert result.mbit_per_s > MIN_MBIT_PER_S, result
        assert_clean_stock_log(tunnel)
        assert_dynamic_tls_crypt(tunnel.stock().log, soft_resets)
        if stock_is_server:
            assert "TLS CRYPT V2 VERIFY SCRIPT OK" in stock_log, stock_log
        # The refused client: same server, mallory's key; it never comes up, the server lives.
        text = client_config(pki=pki, remote=netns_pair.addr_a, cipher="AES-256-GCM",
                             extra=[f"tls-crypt-v2 {mallory}", "hand-window 60"])
        refused_dir = tmp_path / "refused"
        refused_dir.mkdir()
        with start_peer(netns_pair, netns_pair.ns_b, kind=kinds[1], role="client",
                        config_text=text, workdir=refused_dir) as intruder:
            came_up = wait_for(lambda: INIT_DONE in intruder.log(), V2_REFUSED_WAIT, 0.2)
            assert not came_up, intruder.describe()
        tunnel.assert_running()
        server_log = tunnel.server.log()
        if stock_is_server:
            assert "TLS CRYPT V2 VERIFY SCRIPT ERROR" in server_log, server_log
        else:
            assert "tls-crypt-v2-verify refused the client key" in server_log, server_log
        ping_both_ways(tunnel)  # the accepted client is unaffected
    record(f"{direction}-tls-crypt-v2", "AES-256-GCM", result, pings,
           extra=f", {soft_resets} stock soft resets, keys by {maker}, mallory refused")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["tls-auth-keydir-sha1", "tls-crypt"])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_wrap_over_tcp(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                       direction: str, case: str) -> None:
    """The same wraps over the TCP transport (one packet per length-prefixed record), with a
    stock renegotiation during traffic."""
    kinds = DIRECTIONS[direction]
    wrap = wrap_case(case, stock_genkey(tmp_path / "wrap.key"))
    stock_is_server = kinds[0] == "stock"
    reneg = (f"reneg-sec {RENEG_SEC}",)
    server_extra = ("proto tcp4-server", *wrap.server) + (reneg if stock_is_server else ())
    client_extra = ("proto tcp4-client", *wrap.client) + (() if stock_is_server else reneg)
    with tunnel_up(netns_pair, tmp_path, pki, kinds=kinds, cipher="AES-256-GCM",
                   server_extra=server_extra, client_extra=client_extra) as tunnel:
        warm_up(tunnel)
        pings = ping_both_ways(tunnel)
        result = iperf3_through(tunnel, tmp_path, IPERF_SECONDS)
        tunnel.assert_running()
        ping_both_ways(tunnel)
        soft_resets = len(SOFT_RESET.findall(tunnel.stock().log()))
        assert soft_resets >= 1, f"no soft reset during the run\n{tunnel.logs()}"
        assert result.mbit_per_s > MIN_MBIT_PER_S, result
        assert_clean_stock_log(tunnel)
        assert_dynamic_tls_crypt(tunnel.stock().log, soft_resets)
    record(f"{direction}-{case}-tcp", "AES-256-GCM", result, pings,
           extra=f", {soft_resets} stock soft resets")
