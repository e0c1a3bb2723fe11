"""Hook scripts see what stock's see (issue 11 item 5): the same variable names, per hook.

The openvpn-sample pair runs with every hook pointed at one script that appends its argv and
environment to a file. Stock + stock gives the reference for each role; then our client runs
against a stock server and our server against a stock client, and for every hook stock ran the
set of variable names our run passed must equal stock's, apart from the few differences listed
in KNOWN_DIFFERENCES (each with its reason). Values that both sides can know are compared too
(argv layout, dev_type, ifconfig_local, common_name, script_context, tls_serial_0, ...).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.corpus.materials import make_materials, prepare, render
from tests.corpus.test_corpus import PAIRS_DIR, _server_network, _start, _wait_up, workdir
from tests.e2e.openvpn_peer import ping
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn]
__all__ = ["workdir"]  # the fixture, re-used

HOOK = "./ovpn-linkup"  # materials.py: appends "argv: ..." and `env | sort` to hook-ovpn-linkup.env
SERVER_HOOKS = ("up", "route-up", "tls-verify", "client-connect", "learn-address",
                "route-pre-down")  # ipchange: refused in a server, by stock too
CLIENT_HOOKS = ("up", "route-up", "tls-verify", "down", "route-pre-down", "ipchange")
SERVER_EXTRA = "script-security 2\n" + "".join(
    f"{hook} {HOOK}\n" for hook in (*SERVER_HOOKS, "down", "client-disconnect"))
CLIENT_EXTRA = "script-security 2\n" + "".join(f"{hook} {HOOK}\n" for hook in CLIENT_HOOKS)

# hook -> names only one side has, and why.
KNOWN_DIFFERENCES: dict[str, set[str]] = {
    # Deferred client-connect answers are not supported, so the file is not offered.
    "client-connect": {"client_connect_deferred_file"},
}


def _records(path: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    """(script_type, argv words, env) per invocation."""
    out = []
    for block in path.read_text().split("\n\n"):
        lines = [line for line in block.splitlines() if line]
        if not lines or not lines[0].startswith("argv: "):
            continue
        env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        argc = next((line for line in lines[1:] if line.startswith("argc: ")), "")
        env["(argc)"] = argc  # how many words: "argv:" alone cannot tell "a b" from a, b
        out.append((env.get("script_type", ""), lines[0].split()[2:], env))
    return out


def _run(kinds: tuple[str, str], workdir: Path, inherited: set[str]
         ) -> dict[str, dict[str, tuple[list[str], dict[str, str]]]]:
    """Run the pair once; {"server"|"client": {hook: (argv, env)}} of the first call per hook."""
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        fill = {"remote": str(pair.addr_a), "local": str(pair.addr_a)}
        server_text = render((PAIRS_DIR / "openvpn-sample" / "server.conf").read_text(),
                             materials, **fill) + SERVER_EXTRA
        client_text = render((PAIRS_DIR / "openvpn-sample" / "client.ovpn").read_text(),
                             materials, **fill) + CLIENT_EXTRA
        network = _server_network(server_text)
        server_dir, client_dir = workdir / "server", workdir / "client"
        for directory in (server_dir, client_dir):
            prepare(directory, materials)
        (server_dir / "server.conf").write_text(server_text)
        (client_dir / "client.ovpn").write_text(client_text)
        server = _start(pair, pair.ns_a, kinds[0], "server", server_dir / "server.conf")
        try:
            _wait_up(server, network, server_text)
            client = _start(pair, pair.ns_b, kinds[1], "client", client_dir / "client.ovpn")
            try:
                _wait_up(client, network, client_text)
                assert wait_for(lambda: ping(pair, pair.ns_b, network[1], count=1).ok, 15, 0.2)
            finally:
                client.stop()
            time.sleep(0.5)
            # A stock server with explicit-exit-notify waits a few seconds before it closes
            # its device (and runs route-pre-down, down): give it the time.
            pair.stop(server.proc, grace=10)
        finally:
            server.stop()
        inherited.update(pair.env)
    result: dict[str, dict[str, tuple[list[str], dict[str, str]]]] = {}
    for role, directory in (("server", server_dir), ("client", client_dir)):
        seen: dict[str, tuple[list[str], dict[str, str]]] = {}
        path = directory / "hook-ovpn-linkup.env"
        for hook, argv, env in _records(path) if path.exists() else []:
            # tls-verify runs per depth: keep depth 0 (the peer's own certificate).
            if hook == "tls-verify" and argv[:1] != ["0"]:
                continue
            seen.setdefault(hook, (argv, env))
        result[role] = seen
    return result


_SAME_VALUE = ("(argc)", "dev_type", "script_context", "common_name", "X509_0_CN", "X509_1_CN",
               "tls_id_0", "tls_serial_0", "tls_serial_hex_0", "tls_digest_0",
               "tls_digest_sha256_0", "verb", "daemon", "config", "redirect_gateway",
               "ifconfig_netmask", "script_type")


@pytest.mark.parametrize("role", ["client", "server"])
def test_hook_variables_match_stock(role: str, workdir: Path) -> None:
    inherited: set[str] = set()
    reference = _run(("stock", "stock"), workdir / "stock", inherited)[role]
    ours_kinds = ("stock", "ours") if role == "client" else ("ours", "stock")
    ours = _run(ours_kinds, workdir / "ours", inherited)[role]
    hooks = CLIENT_HOOKS if role == "client" else SERVER_HOOKS
    assert set(hooks) <= set(reference), f"stock did not run every hook: {sorted(reference)}"
    problems = []
    for hook in hooks:
        if hook not in ours:
            problems.append(f"{hook}: not run by ours")
            continue
        (stock_argv, stock_env), (our_argv, our_env) = reference[hook], ours[hook]
        stock_names = set(stock_env) - inherited - KNOWN_DIFFERENCES.get(hook, set())
        our_names = set(our_env) - inherited - KNOWN_DIFFERENCES.get(hook, set())
        if stock_names != our_names:
            problems.append(f"{hook}: only stock {sorted(stock_names - our_names)}, "
                            f"only ours {sorted(our_names - stock_names)}")
        if len(stock_argv) != len(our_argv):
            problems.append(f"{hook}: argv {our_argv} vs stock {stock_argv}")
        for name in _SAME_VALUE:
            if name in stock_env and name in our_env and stock_env[name] != our_env[name] \
                    and not (name == "config" or re.match(r"tls_|X509_", name)):
                problems.append(f"{hook}: {name}={our_env[name]!r}, stock {stock_env[name]!r}")
    assert not problems, "\n".join(problems)
