"""Interop with stock `openvpn` 2.6 for what older configs use (issue 11): CBC + HMAC data
channels and cipher negotiation corner cases, each in both roles.

Short on purpose: ping both ways and a 2-second iperf3 per case. The harness case (stock on both
sides) for each feature says whether a failure is ours or the config's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.e2e.interop import (
    DIRECTIONS,
    MIN_MBIT_PER_S,
    Tunnel,
    assert_clean_stock_log,
    iperf3_through,
    peers_started,
    ping_both_ways,
    record,
    tunnel_up,
    warm_up,
)
from tests.e2e.openvpn_peer import Pki, ping
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping, pytest.mark.iperf3]

IPERF_SECONDS = 2
ALL_KINDS = {**DIRECTIONS, "stock-client-to-stock-server": ("stock", "stock")}


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
    # CFB/OFB (tunnel/protocol/cfb.py): IV = the long-form packet-id, no padding.
    pytest.param("AES-256-CFB", "SHA1", id="aes256cfb-sha1"),
    pytest.param("AES-128-OFB", "SHA256", id="aes128ofb-sha256"),
]


@pytest.mark.parametrize(("cipher", "auth"), CBC_CASES)
@pytest.mark.parametrize("direction", list(ALL_KINDS))
def test_cbc_negotiated(netns_pair: NetnsPair, tmp_path: Path, pki: Pki, direction: str,
                        cipher: str, auth: str) -> None:
    """`data-ciphers AES-x-CBC` + `auth DIGEST` on both sides: NCP picks the CBC cipher."""
    extra = [f"auth {auth}"]
    run_case(netns_pair, tmp_path, pki, direction, cipher=cipher, expect=cipher,
             server_extra=extra, client_extra=extra, label=f"/{auth}")


@pytest.mark.parametrize("fallback", ["AES-256-CBC", "AES-256-CFB"])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_cbc_with_a_compat_mode_2_3_peer(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                                         direction: str, fallback: str) -> None:
    """The stock peer runs `--compat-mode 2.3.0` with `data-ciphers-fallback AES-256-CBC`
    (stock then adds the fallback to its data-ciphers, options.c), our side only allows
    AES-256-CBC: the negotiation lands on AES-256-CBC in both roles. The same for an old
    config's `cipher AES-256-CFB` on our side."""
    stock_side = ["compat-mode 2.3.0", "data-ciphers AES-256-GCM",
                  f"data-ciphers-fallback {fallback}"]
    ours = [f"data-ciphers-fallback {fallback}" if fallback.endswith("CBC")
            else f"cipher {fallback}"]
    stock_is_server = DIRECTIONS[direction][0] == "stock"
    run_case(netns_pair, tmp_path, pki, direction, cipher=fallback, expect=fallback,
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


@pytest.mark.parametrize("case", [
    # stock compresses with LZO, so our side decompresses with python-lzo
    pytest.param(c, marks=pytest.mark.lzo) if c == "comp-lzo" else c for c in COMPRESSION_CASES])
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


# -- username/password ------------------------------------------------------------------------

USERNAME, PASSWORD = "alice", "s3cret pass"
WRONG_PASSWORD = "Xq9-not-the-password"
VERIFY_SCRIPT = """#!/bin/sh
# auth-user-pass-verify: via-file, $1 holds the username and the password on two lines;
# via-env (script-security 3), $username and $password.
if [ -n "$1" ]; then user=$(sed -n 1p "$1"); pass=$(sed -n 2p "$1")
else user=$username; pass=$password; fi
[ "$user" = "alice" ] && [ "$pass" = "s3cret pass" ] || exit 1
[ "$script_type" = "user-pass-verify" ] && [ -n "$untrusted_ip" ] || exit 1
exit 0
"""


def auth_files(workdir: Path, password: str) -> tuple[Path, Path]:
    script = workdir / "verify.sh"
    script.write_text(VERIFY_SCRIPT)
    script.chmod(0o755)
    creds = workdir / "creds.txt"
    creds.write_text(f"{USERNAME}\n{password}\n")
    creds.chmod(0o600)
    return script, creds


def server_auth_lines(script: Path, method: str = "via-file") -> list[str]:
    security = "3" if method == "via-env" else "2"  # stock passes $password only with 3
    return [f"auth-user-pass-verify {script} {method}", f"script-security {security}",
            "verify-client-cert none", "username-as-common-name"]


def without_cert(text: str) -> str:
    """The client config with only `ca`: username/password instead of a certificate."""
    return "".join(line + "\n" for line in text.splitlines()
                   if not line.startswith(("cert ", "key ")))


@pytest.mark.parametrize("method", ["via-file", "via-env"])
@pytest.mark.parametrize("direction", list(ALL_KINDS))
def test_username_password(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                           direction: str, method: str) -> None:
    """A client with only `ca` + auth-user-pass FILE; the server checks it with a script."""
    pair = netns_pair
    script, creds = auth_files(tmp_path, PASSWORD)
    with tunnel_up(pair, tmp_path, pki, kinds=ALL_KINDS[direction], cipher="AES-256-GCM",
                   server_extra=server_auth_lines(script, method),
                   client_extra=[f"auth-user-pass {creds}"], client_text=without_cert) as tunnel:
        warm_up(tunnel)
        server, client = tunnel.peers()
        assert ping(pair, pair.ns_b, tunnel.server_addr, count=3).received == 3
        assert ping(pair, pair.ns_a, tunnel.client_addr, count=3).received == 3
        assert PASSWORD not in server.log() and PASSWORD not in client.log()
        if server.label.startswith("stock"):
            assert "Username/Password authentication succeeded" in server.log() or (
                "TLS: Username/Password authentication succeeded" in server.log())
            assert f"{USERNAME}/" in server.log()  # the CN is the username
    print(f"\ninterop {direction} auth-user-pass (ca only, {method}, username-as-common-name): "
          "ping both ways ok")


@pytest.mark.parametrize("direction", list(ALL_KINDS))
def test_wrong_password_gets_auth_failed(netns_pair: NetnsPair, tmp_path: Path, pki: Pki,
                                         direction: str) -> None:
    script, creds = auth_files(tmp_path, WRONG_PASSWORD)
    with peers_started(netns_pair, tmp_path, pki, kinds=ALL_KINDS[direction],
                       cipher="AES-256-GCM", server_extra=server_auth_lines(script),
                       client_extra=[f"auth-user-pass {creds}", "auth-retry none"],
                       client_text=without_cert) as peers:
        server, client = peers.server, peers.client
        # auth-retry none: the client ends by itself after AUTH_FAILED, as stock does.
        exited = wait_for(lambda: client.proc.poll() is not None, 30, 0.2)
        assert exited, f"client still running:\n{peers.logs()}"
        assert "AUTH_FAILED" in client.log(), client.describe()
        assert "Initialization Sequence Completed" not in client.log()
        assert WRONG_PASSWORD not in server.log() + client.log()  # never logged
    print(f"\ninterop {direction} wrong password: AUTH_FAILED, client exited")


NOCACHE_SCRIPT = """#!/bin/sh
# via-file: record every password the client sends (one per key), accept two known ones.
pass=$(sed -n 2p "$1")
printf '%s\\n' "$pass" >> {seen}
[ "$(sed -n 1p "$1")" = "alice" ] || exit 1
[ "$pass" = "s3cret pass" ] || [ "$pass" = "second pass" ] || exit 1
"""


def test_auth_nocache_reads_the_file_again_on_renegotiation(netns_pair: NetnsPair,
                                                            tmp_path: Path, pki: Pki) -> None:
    """Our client with auth-nocache, the stock server renegotiating every few seconds: the
    password of the first key is dropped, the renegotiation sends the file's new content."""
    pair = netns_pair
    seen = tmp_path / "seen.txt"
    script = tmp_path / "verify.sh"
    script.write_text(NOCACHE_SCRIPT.format(seen=seen))
    script.chmod(0o755)
    creds = tmp_path / "creds.txt"
    creds.write_text(f"{USERNAME}\n{PASSWORD}\n")
    with tunnel_up(pair, tmp_path, pki, kinds=("stock", "ours"), cipher="AES-256-GCM",
                   server_extra=[*server_auth_lines(script), "reneg-sec 6"],
                   client_extra=[f"auth-user-pass {creds}", "auth-nocache"],
                   client_text=without_cert) as tunnel:
        warm_up(tunnel)
        creds.write_text(f"{USERNAME}\nsecond pass\n")

        def renegotiated() -> bool:
            return seen.exists() and "second pass" in seen.read_text()

        assert wait_for(renegotiated, 30, 0.3), tunnel.logs()
        assert seen.read_text().splitlines()[0] == PASSWORD
        assert wait_for(lambda: ping(pair, pair.ns_b, tunnel.server_addr, count=1).ok, 15, 0.2)
        client_log = tunnel.client.log()
        assert not any("auth-nocache" in line and "no effect" in line
                       for line in client_log.splitlines())  # applied, not skipped
        assert PASSWORD not in client_log and "second pass" not in client_log
    print("\ninterop ours-client-to-stock-server auth-nocache: renegotiation sent the re-read "
          "password, ping ok")


@pytest.mark.parametrize("client_kind", ["ours", "stock"])
def test_push_peer_info_reaches_the_stock_server(netns_pair: NetnsPair, tmp_path: Path,
                                                 pki: Pki, client_kind: str) -> None:
    """`push-peer-info` + `setenv UV_*`: the stock server logs ("peer info: ...") the same
    detail-3 names from our client as from the stock one."""
    with tunnel_up(netns_pair, tmp_path, pki, kinds=("stock", client_kind),
                   cipher="AES-256-GCM",
                   client_extra=["push-peer-info", "setenv UV_ID 42"]) as tunnel:
        server = tunnel.server
        assert wait_for(lambda: "peer info: UV_ID=42" in server.log(), 15, 0.2), tunnel.logs()
        names = {line.split("peer info: ", 1)[1].split("=", 1)[0]
                 for line in server.log().splitlines() if "peer info: " in line}
        assert {"UV_ID", "IV_SSL", "IV_PLAT_VER", "IV_PROTO", "IV_CIPHERS"} <= names, names
    print(f"\ninterop {client_kind}-client push-peer-info: stock server saw {sorted(names)}")
