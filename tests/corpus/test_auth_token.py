"""auth-token and auth-retry against a stock server (issue 11 item 1), stock's client beside ours.

The access-server pair (username/password checked by a script) with `auth-gen-token` on the
stock server, which then pushes a token after the first login:

* a SIGUSR1 restart of the client sends the token, not the password (the server logs the
  token login); with a new server process (new token key) the old token gets AUTH_FAILED, the
  client drops it and logs in with its password at once, although auth-retry is none;
* `auth-retry interact` with a wrong password in the file: AUTH_FAILED, the file is read again
  for the next try (fixed meanwhile), and the client gets in.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.corpus.materials import (
    PASSWORD,
    USERNAME,
    Materials,
    make_materials,
    prepare,
    render,
)
from tests.corpus.test_corpus import PAIRS_DIR, _server_network, _start, workdir
from tests.e2e.openvpn_peer import INIT_DONE
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn]
__all__ = ["workdir"]

TOKEN_LOGIN = "auth-token authentication succeeded"


def _texts(pair: NetnsPair, materials: Materials, server_extra: str, client_extra: str
           ) -> tuple[str, str]:
    fill = {"remote": str(pair.addr_a), "local": str(pair.addr_a)}
    server = render((PAIRS_DIR / "access-server" / "server.conf").read_text(), materials,
                    **fill) + server_extra
    client = render((PAIRS_DIR / "access-server" / "client.ovpn").read_text(), materials,
                    **fill) + client_extra
    return server, client


@pytest.mark.parametrize("kind", ["stock", "ours"])
def test_auth_token_kept_across_restarts_until_refused(kind: str, workdir: Path) -> None:
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        server_text, client_text = _texts(pair, materials, "auth-gen-token\n", "")
        _server_network(server_text)
        server_dir, client_dir = workdir / "server", workdir / "client"
        for directory in (server_dir, client_dir):
            prepare(directory, materials)
        (server_dir / "server.conf").write_text(server_text)
        (client_dir / "client.ovpn").write_text(client_text)
        server = _start(pair, pair.ns_a, "stock", "server", server_dir / "server.conf")
        try:
            server.wait_up()
            client = _start(pair, pair.ns_b, kind, "client", client_dir / "client.ovpn")
            try:
                client.wait_up()
                logs = lambda: f"{server.describe()}\n\n{client.describe()}"  # noqa: E731
                assert TOKEN_LOGIN not in server.log(), logs()
                # 1. SIGUSR1: the restarted client logs in with the pushed token.
                os.kill(client.proc.pid, signal.SIGUSR1)
                assert wait_for(lambda: client.log().count(INIT_DONE) >= 2, 30, 0.2), logs()
                assert TOKEN_LOGIN in server.log(), logs()
                # 2. A new server process (a new random token key): at the next restart the
                # token is refused, the client falls back to its password at once and is back
                # (auth-retry none).
                pair.stop(server.proc, grace=10)
                server = _start(pair, pair.ns_a, "stock", "server", server_dir / "server.conf")
                assert wait_for(lambda: server.log().count(INIT_DONE) >= 2, 30, 0.2), logs()
                os.kill(client.proc.pid, signal.SIGUSR1)
                assert wait_for(lambda: "AUTH_FAILED" in client.log(), 40, 0.2), logs()
                assert wait_for(lambda: client.log().count(INIT_DONE) >= 3, 40, 0.2), logs()
                client.assert_running()
            finally:
                client.stop()
        finally:
            server.stop()


@pytest.mark.parametrize("kind", ["stock", "ours"])
def test_auth_retry_interact_reads_the_file_again(kind: str, workdir: Path) -> None:
    materials = make_materials(workdir)
    with NetnsPair(workdir=workdir) as pair:
        server_text, client_text = _texts(pair, materials, "", "auth-retry interact\n")
        server_dir, client_dir = workdir / "server", workdir / "client"
        for directory in (server_dir, client_dir):
            prepare(directory, materials)
        (client_dir / "credentials.txt").write_text(f"{USERNAME}\nnot-the-password\n")
        (server_dir / "server.conf").write_text(server_text)
        (client_dir / "client.ovpn").write_text(client_text)
        server = _start(pair, pair.ns_a, "stock", "server", server_dir / "server.conf")
        try:
            server.wait_up()
            client = _start(pair, pair.ns_b, kind, "client", client_dir / "client.ovpn")
            try:
                logs = lambda: f"{server.describe()}\n\n{client.describe()}"  # noqa: E731
                assert wait_for(lambda: "AUTH_FAILED" in client.log(), 30, 0.2), logs()
                (client_dir / "credentials.txt").write_text(f"{USERNAME}\n{PASSWORD}\n")
                client.wait_up(40)
                client.assert_running()
            finally:
                client.stop()
        finally:
            server.stop()
