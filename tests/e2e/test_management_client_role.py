"""Our client driven through its management socket, against the stock server.

management-hold holds the connection until `hold release`; `state on` then shows stock's
client states as >STATE: lines up to CONNECTED,SUCCESS with the tunnel address and the
server's address; `bytecount 1` gives >BYTECOUNT:in,out; `signal SIGUSR1` restarts (the
same management connection sees RECONNECTING,SIGUSR1 and, the hold flag being set, a new
>HOLD:), and a second release brings it back up.
"""

from __future__ import annotations

import re
import urllib.request
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


def states_until(m: MgmtClient, final: str) -> list[list[str]]:
    seen = []
    while True:
        fields = m.wait_notification(">STATE:", timeout=30)[len(">STATE:"):].split(",")
        assert len(fields) == 8, fields
        seen.append(fields)
        if fields[1] == final:
            return seen


def test_client_hold_states_bytecount_and_sigusr1(netns_pair: NetnsPair, tmp_path: Path) -> None:
    pair = netns_pair
    pki = make_pki(tmp_path / "pki")
    subnet = pair.new_subnet()
    sock = tmp_path / "client.sock"
    with start_peer(pair, pair.ns_a, kind="stock", role="server", workdir=tmp_path,
                    config_text=server_config(pki=pki, local=pair.addr_a, subnet=subnet,
                                              cipher="AES-256-GCM")) as server, \
         start_peer(pair, pair.ns_b, kind="ours", role="client", workdir=tmp_path,
                    config_text=client_config(pki=pki, remote=pair.addr_a,
                                              cipher="AES-256-GCM",
                                              extra=[f"management {sock} unix",
                                                     "management-hold",
                                                     "metrics-listen 127.0.0.1:9110"])) as client:
        server.wait_up()
        m = MgmtClient.connect(str(sock))
        m.read_line()
        assert m.read_line() == ">HOLD:Waiting for hold release:0"
        assert m.command("state on") == ["SUCCESS: real-time state notification set to ON"]
        assert m.command("hold release") == ["SUCCESS: hold release succeeded"]
        seen = states_until(m, "CONNECTED")
        assert seen[0][1] == "CONNECTING"
        connected = seen[-1]
        assert connected[2] == "SUCCESS" and connected[3].startswith(
            str(subnet.network_address).rsplit(".", 1)[0])
        assert connected[4:6] == [str(pair.addr_a), "1194"]
        client.wait_up(10)

        assert m.command("bytecount 1") == ["SUCCESS: bytecount interval changed"]
        count = m.wait_notification(">BYTECOUNT:", 5)[len(">BYTECOUNT:"):].split(",")
        assert len(count) == 2 and int(count[0]) > 0 and int(count[1]) > 0
        m.command("bytecount 0")
        with pair.entered(pair.ns_b):  # the client's own metrics: totals, no per-client rows
            scrape = urllib.request.urlopen("http://127.0.0.1:9110/metrics", timeout=10).read()
        text = scrape.decode()
        assert 'tunnel_info{role="client"' in text and "tunnel_client_" not in text
        received = re.search(r"^tunnel_link_received_bytes_total (\S+)$", text, re.M)
        assert received is not None and float(received.group(1)) > 0

        assert m.command("signal SIGUSR1") == ["SUCCESS: signal SIGUSR1 thrown"]
        assert states_until(m, "RECONNECTING")[-1][2] == "SIGUSR1"
        assert m.wait_notification(">HOLD:", 10) == ">HOLD:Waiting for hold release:0"
        assert m.command("hold release") == ["SUCCESS: hold release succeeded"]
        states_until(m, "CONNECTED")
        assert wait_for(lambda: client.log().count(INIT_DONE) >= 2, 20), client.tail()
        assert "SIGUSR1[soft,] received, process restarting" in client.log()
        m.close()
