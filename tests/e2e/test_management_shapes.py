"""The management interface, command by command, against the stock `openvpn` in both roles.

The same script of commands is sent to a stock server and to ours (a stock client connected
to each), then to a stock client and to ours (each connected to a stock server). The answers
are reduced to their shape (mgmt_client.line_shape: record types, field kinds and counts,
fixed words, CRLF framing) and must match, so a parser written for stock parses ours.
Where ours differs on purpose it is spelled out: `help` lists only the commands we implement
(each of its lines is one of stock's, in stock's order), and the version text is ours.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mgmt_client import MgmtClient, line_shape
from tests.e2e.openvpn_peer import (
    client_config,
    make_pki,
    server_config,
    start_peer,
)
from tests.netns import NetnsPair

pytestmark = [pytest.mark.root, pytest.mark.openvpn]

SCRIPT = [
    "version", "pid", "status", "status 1", "status 2", "status 3", "state", "state on",
    "state off", "log 2", "log on", "log off", "echo all", "bytecount 1", "bytecount 0",
    "verb", "verb 4", "mute", "mute 0", "load-stats", "net", "hold", "kill nobody",
    "kill 192.0.2.9:5", "client-kill 99", "client-deny 1 2 no", "client-auth-nt 1 2",
    "frobnicate", "signal SIGFOO", "state 1 on", "log", "echo", "bytecount", "hold bogus",
    "username Auth u", "password Auth p", "state bogus",
]


@contextlib.contextmanager
def tunnel(pair: NetnsPair, workdir: Path, server: str, client: str) -> Iterator[Path]:
    """A server and a client up, each with a management socket; yields the socket dir."""
    workdir.mkdir()
    pki = make_pki(workdir / "pki")
    subnet = pair.new_subnet()
    mgmt = ["management {} unix".format(workdir / "{}.sock")]
    with start_peer(pair, pair.ns_a, kind=server, role="server", workdir=workdir,
                    config_text=server_config(
                        pki=pki, local=pair.addr_a, subnet=subnet, cipher="AES-256-GCM",
                        extra=[mgmt[0].format("server")])), \
         start_peer(pair, pair.ns_b, kind=client, role="client", workdir=workdir,
                    config_text=client_config(
                        pki=pki, remote=pair.addr_a, cipher="AES-256-GCM",
                        extra=[mgmt[0].format("client")])) as c:
        c.wait_up()
        time.sleep(0.5)
        yield workdir


def run_script(path: Path) -> dict[str, list[str]]:
    answers: dict[str, list[str]] = {}
    with MgmtClient.connect(str(path)) as m:
        answers["<greeting>"] = [m.read_line()]
        for command in ["help", "state all", *SCRIPT]:
            answers[command] = m.command(command, timeout=5)
        # client-auth reads its body up to END before it answers
        m.send("client-auth 1 2")
        answers["client-auth 1 2 / END"] = m.command("END", timeout=5)
        m.command("bytecount 1")
        answers["<bytecount>"] = [m.wait_notification(">BYTECOUNT", timeout=15)]
        m.command("bytecount 0")
        # Every line ends with CRLF (no bare LF anywhere in what came back).
        answers["<framing>"] = [str(b"\n" not in m.raw.replace(b"\r\n", b""))]
        m.send("quit")
        m.sock.settimeout(5)
        answers["<quit>"] = ["closed" if m.sock.recv(4096) == b"" else "still open"]
    return answers


def shapes(answers: dict[str, list[str]]) -> dict[str, list[str]]:
    out = {}
    for command, lines in answers.items():
        sep = "\t" if command == "status 3" else ","
        out[command] = [line_shape(line, sep) for line in lines]
    return out


def compare(stock: dict[str, list[str]], ours: dict[str, list[str]]) -> list[str]:
    problems = []
    help_stock, help_ours = stock.pop("help"), ours.pop("help")
    it = iter(help_stock[1:])
    if not all(line in it for line in help_ours[1:]):  # a subsequence, in stock's order
        problems.append(f"help: lines not stock's (or out of order): {help_ours}")
    # Tools (openvpn-monitor) read the word after "OpenVPN" as a semantic version.
    for name, answers in (("stock", stock), ("ours", ours)):
        if not re.match(r"OpenVPN Version: OpenVPN \d+\.\d+\.\d+ ", answers["version"][0]):
            problems.append(f"version ({name}): {answers['version'][0]!r}")
    # State history: the same 8-field layout, states from stock's vocabulary, and the same
    # last (current) line; stock skips some intermediate states ours reports.
    hist_stock, hist_ours = stock.pop("state all"), ours.pop("state all")
    last_stock = [line_shape(line) for line in hist_stock[-2:]]
    last_ours = [line_shape(line) for line in hist_ours[-2:]]
    if last_stock != last_ours or {line.count(",") for line in hist_ours[:-1]} != {7}:
        problems.append(f"state all: stock {hist_stock} ours {hist_ours}")
    s_shapes, o_shapes = shapes(stock), shapes(ours)
    for command in stock:
        if s_shapes[command] != o_shapes[command]:
            problems.append(f"{command!r}:\n  stock {s_shapes[command]}\n  ours  "
                            f"{o_shapes[command]}\n  stock raw {stock[command]}\n  ours raw "
                            f"{ours[command]}")
    return problems


@pytest.mark.parametrize("role", ["server", "client"])
def test_management_answers_have_stocks_shape(netns_pair: NetnsPair, tmp_path: Path,
                                              role: str) -> None:
    results = {}
    for kind in ("stock", "ours"):
        server, client = (kind, "stock") if role == "server" else ("stock", kind)
        with tunnel(netns_pair, tmp_path / kind, server, client) as workdir:
            results[kind] = run_script(workdir / f"{role}.sock")
    problems = compare(results["stock"], results["ours"])
    print(f"{role}: {len(SCRIPT) + 5} commands/notifications compared, "
          f"{len(problems)} differences")
    assert not problems, "\n".join(problems)
