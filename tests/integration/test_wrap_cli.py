"""`tunnel genkey` and bad control-channel keys at `tunnel server/client --config`: one clear
`FILE:LINE` line on stderr and exit 1, never a traceback; keys interchangeable with stock's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_cli_errors import (
    REPO_ROOT,
    TIMEOUT,
    _assert_one_line_failure,
    _client_conf,
    _run,
    _server_conf,
    _write,
    pki_fixture,  # noqa: F401  (the module's PKI)
)
from tunnel.pki import PkiPaths
from tunnel.protocol.wrap import ClientKey, ServerKey, parse_static_key
from tunnel.protocol.wrap.v2keys import unwrap_client_key


def _tunnel(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "tunnel", *argv], capture_output=True,
                          text=True, timeout=TIMEOUT, env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def test_genkey_writes_every_kind(tmp_path: Path) -> None:
    for kind in ("secret", "tls-crypt-v2-server"):
        result = _tunnel("genkey", kind, f"{kind}.key", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / f"{kind}.key").stat().st_mode & 0o777 == 0o600
    parse_static_key((tmp_path / "secret.key").read_text())
    server = ServerKey.parse((tmp_path / "tls-crypt-v2-server.key").read_text())
    result = _tunnel("genkey", "tls-crypt-v2-client", "c.key", "--server-key",
                     "tls-crypt-v2-server.key", "--metadata", "Ym9i", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    client = ClientKey.parse((tmp_path / "c.key").read_text())
    assert unwrap_client_key(server, client.wkc) == (client.key, b"\x00bob")
    # Without --metadata: a timestamp (type 1), which tls-crypt-v2-max-age checks.
    assert _tunnel("genkey", "tls-crypt-v2-client", "t.key", "--server-key",
                   "tls-crypt-v2-server.key", cwd=tmp_path).returncode == 0
    stamped = unwrap_client_key(server, ClientKey.parse((tmp_path / "t.key").read_text()).wkc)
    assert stamped is not None and stamped[1][0] == 1 and len(stamped[1]) == 9


@pytest.mark.parametrize(("argv", "words"), [
    (("genkey", "secret", "secret.key"), "refusing to overwrite existing file secret.key"),
    (("genkey", "tls-crypt-v2-client", "c.key"), "needs --server-key"),
    (("genkey", "tls-crypt-v2-client", "c.key", "--server-key", "secret.key"),
     "secret.key: no '-----BEGIN OpenVPN tls-crypt-v2 server key-----' line"),
    (("genkey", "tls-crypt-v2-client", "c.key", "--server-key", "missing.key"),
     "cannot read server key missing.key"),
])
def test_genkey_errors(tmp_path: Path, argv: tuple[str, ...], words: str) -> None:
    assert _tunnel("genkey", "secret", "secret.key", cwd=tmp_path).returncode == 0
    result = _tunnel(*argv, cwd=tmp_path)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.openvpn
def test_stock_reads_our_keys_and_we_read_stock_keys(tmp_path: Path) -> None:
    assert _tunnel("genkey", "tls-crypt-v2-server", "ours-server.key", cwd=tmp_path).returncode == 0
    # Stock wraps a client key with our server key and checks it unwraps (it aborts if not).
    stock = subprocess.run(["openvpn", "--tls-crypt-v2", "ours-server.key", "--genkey",
                            "tls-crypt-v2-client", "stock-client.key"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert stock.returncode == 0, stock.stdout + stock.stderr
    server = ServerKey.parse((tmp_path / "ours-server.key").read_text())
    client = ClientKey.parse((tmp_path / "stock-client.key").read_text())
    assert unwrap_client_key(server, client.wkc) is not None
    subprocess.run(["openvpn", "--genkey", "tls-crypt-v2-server", "stock-server.key"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=TIMEOUT)
    assert _tunnel("genkey", "tls-crypt-v2-client", "ours-client.key", "--server-key",
                   "stock-server.key", cwd=tmp_path).returncode == 0
    # And stock loads our client key as a client (`--tls-crypt-v2 FILE` with --genkey of a
    # server key would fail on a client key; loading it in a test run is the e2e's job).
    assert "-----BEGIN OpenVPN tls-crypt-v2 client key-----" in (
        tmp_path / "ours-client.key").read_text()
    assert _tunnel("genkey", "secret", "ours.key", cwd=tmp_path).returncode == 0
    # The static key: stock reads ours (its crypto self-test with it as --secret).
    check = subprocess.run(["openvpn", "--test-crypto", "--secret", "ours.key", "--cipher",
                            "AES-256-CBC", "--verb", "0"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert check.returncode == 0, check.stdout + check.stderr


# -- bad keys at start -------------------------------------------------------------------------

def _key_lines(tmp_path: Path) -> list[str]:
    assert _tunnel("genkey", "secret", "good.key", cwd=tmp_path).returncode == 0
    return (tmp_path / "good.key").read_text().splitlines()


def test_truncated_key_file(tmp_path: Path, pki: PkiPaths) -> None:
    lines = _key_lines(tmp_path)
    key = _write(tmp_path, "ta.key", "\n".join(lines[:12]) + "\n")
    conf = _write(tmp_path, "client.conf", _client_conf(pki, "127.0.0.1", f"tls-auth {key} 1"))
    result = _run("client", conf)
    _assert_one_line_failure(result, "client", f"{conf}:10:", f"{key}:12:", "truncated")
    assert result.returncode == 1


def test_non_hex_key_file(tmp_path: Path, pki: PkiPaths) -> None:
    lines = _key_lines(tmp_path)
    lines[8] = "q" + lines[8][1:]
    key = _write(tmp_path, "tc.key", "\n".join(lines) + "\n")
    conf = _write(tmp_path, "server.conf", _server_conf(pki, 1194, f"tls-crypt {key}"))
    result = _run("server", conf)
    _assert_one_line_failure(result, "server", f"{conf}:11:", f"{key}:9:",
                             "non-hex character 'q'")
    assert result.returncode == 1


def test_v2_keys_in_the_wrong_role(tmp_path: Path, pki: PkiPaths) -> None:
    assert _tunnel("genkey", "tls-crypt-v2-server", "s.key", cwd=tmp_path).returncode == 0
    assert _tunnel("genkey", "tls-crypt-v2-client", "c.key", "--server-key", "s.key",
                   cwd=tmp_path).returncode == 0
    conf = _write(tmp_path, "server.conf",
                  _server_conf(pki, 1194, f"tls-crypt-v2 {tmp_path / 'c.key'}"))
    _assert_one_line_failure(_run("server", conf), "server", f"{conf}:11:",
                             "needs the tls-crypt-v2 server key")
    conf = _write(tmp_path, "client.conf",
                  _client_conf(pki, "127.0.0.1", f"tls-crypt-v2 {tmp_path / 's.key'}"))
    _assert_one_line_failure(_run("client", conf), "client", f"{conf}:10:",
                             "needs its tls-crypt-v2 client key")
    conf = _write(tmp_path, "server2.conf", _server_conf(
        pki, 1194, f"tls-crypt-v2 {tmp_path / 's.key'}\ntls-crypt-v2-verify /bin/true"))
    _assert_one_line_failure(_run("server", conf), "server", f"{conf}:12:",
                             "needs 'script-security 2'")


def test_pki_writes_a_tls_crypt_key(tmp_path: Path) -> None:
    result = _tunnel("pki", "out", "--tls-crypt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key = tmp_path / "out" / "tc.key"
    assert key.stat().st_mode & 0o777 == 0o600
    parse_static_key(key.read_text())
    assert "tls-crypt key" in result.stdout and "tc.key" in result.stdout
