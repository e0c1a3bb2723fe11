"""Driving our server through its management socket, with the stock client as the peer.

`management-hold` holds the start until `hold release`; `kill CN` drops the client at once
(gone from `status` at once); `client-kill CID` sends it RESTART so it comes
back as a new client id; `signal SIGUSR2` prints the status to the log, `signal SIGHUP`
re-reads the config and restarts (the management connection survives it, as with stock),
and `signal SIGTERM` ends the process with exit code 0.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.mgmt_client import MgmtClient
from tests.e2e.openvpn_peer import (
    INIT_DONE,
    client_config,
    make_pki,
    server_config,
    start_peer,
)
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn]


def clients_in_status(m: MgmtClient) -> list[str]:
    return [line for line in m.command("status 2") if line.startswith("CLIENT_LIST,")]


def test_hold_kill_client_kill_and_signals(netns_pair: NetnsPair, tmp_path: Path) -> None:
    pair = netns_pair
    pki = make_pki(tmp_path / "pki")
    sock = tmp_path / "mgmt.sock"
    server_text = server_config(
        pki=pki, local=pair.addr_a, subnet=pair.new_subnet(), cipher="AES-256-GCM",
        # explicit-exit-notify: the restart tells the client (RESTART), as stock's does
        extra=[f"management {sock} unix", "management-hold", "explicit-exit-notify 1"])
    with start_peer(pair, pair.ns_a, kind="ours", role="server", workdir=tmp_path,
                    config_text=server_text) as server:
        m = MgmtClient.connect(str(sock))
        assert m.read_line().startswith(">INFO:OpenVPN Management Interface Version 5")
        assert m.read_line() == ">HOLD:Waiting for hold release:0"
        time.sleep(1.5)
        assert INIT_DONE not in server.log(), "started before hold release"
        assert m.command("hold") == ["SUCCESS: hold=1"]
        assert m.command("hold release") == ["SUCCESS: hold release succeeded"]
        server.wait_up(20)

        with start_peer(pair, pair.ns_b, kind="stock", role="client", workdir=tmp_path,
                        config_text=client_config(pki=pki, remote=pair.addr_a,
                                                  cipher="AES-256-GCM")) as client:
            client.wait_up()
            established = m.wait_notification(">CLIENT:ESTABLISHED,", timeout=10)
            cid = int(established.split(",")[1])
            assert len(clients_in_status(m)) == 1

            # kill CN: gone at once
            assert m.command("kill client") == [
                "SUCCESS: common name 'client' found, 1 client(s) killed"]
            assert clients_in_status(m) == []  # (no >CLIENT:DISCONNECT without client-auth)

            # The stock client only learns it at ping-restart; RESTART it through client-kill
            # once it is back... it is not connected now, so client-kill must fail.
            assert m.command(f"client-kill {cid}") == ["ERROR: client-kill command failed"]
            client.stop()

        with start_peer(pair, pair.ns_b, kind="stock", role="client", workdir=tmp_path,
                        config_text=client_config(pki=pki, remote=pair.addr_a,
                                                  cipher="AES-256-GCM")) as client:
            client.wait_up()
            second = int(m.wait_notification(">CLIENT:ESTABLISHED,", 10).split(",")[1])
            assert second > cid
            assert m.command(f"client-kill {second}") == [
                "SUCCESS: client-kill command succeeded"]
            # RESTART makes the stock client reconnect by itself, as a new client id
            assert wait_for(lambda: "server-pushed-connection-reset" in client.log(), 10), \
                client.tail()
            third = int(m.wait_notification(">CLIENT:ESTABLISHED,", 20).split(",")[1])
            assert third > second

            assert m.command("signal SIGUSR2") == ["SUCCESS: signal SIGUSR2 thrown"]
            assert wait_for(lambda: "CLIENT_LIST" in server.log() or "OpenVPN CLIENT LIST"
                            in server.log(), 5), server.tail()

            assert m.command("hold off") == ["SUCCESS: hold flag set to OFF"]
            assert m.command("signal SIGHUP") == ["SUCCESS: signal SIGHUP thrown"]
            assert wait_for(lambda: server.log().count(INIT_DONE) >= 2, 20), server.tail()
            assert "SIGHUP[hard,] received, process restarting" in server.log()
            assert m.command("pid")[0].startswith("SUCCESS: pid=")  # same connection
            assert wait_for(lambda: clients_in_status(m) != [], 30, interval=0.5), \
                "client did not return"

        assert m.command("signal SIGTERM") == ["SUCCESS: signal SIGTERM thrown"]
        server.proc.wait(15)
        assert server.proc.returncode == 0, server.tail()
        m.close()
