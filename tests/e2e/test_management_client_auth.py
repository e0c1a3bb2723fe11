"""management-client-auth end to end: a management client approves one client, denies another.

Run against the stock server and against ours with the same assertions (so ours is held to
stock's behaviour, not to our reading of it): each connecting client is announced as
>CLIENT:CONNECT,CID,KID with a >CLIENT:ENV block (common_name, untrusted_ip, ...) ended by
>CLIENT:ENV,END; nothing flows until the verdict; `client-auth CID KID` + END lets "client" in
(>CLIENT:ESTABLISHED, and pings cross the tunnel), `client-deny CID KID reason client-reason`
sends "bob" AUTH_FAILED with the client reason, and the stock client exits on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.mgmt_client import MgmtClient
from tests.e2e.openvpn_peer import (
    Pki,
    client_config,
    ping,
    server_config,
    start_peer,
)
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping]


def read_client_event(m: MgmtClient, kind: str) -> tuple[int, int, dict[str, str]]:
    head, *lines = m.take_block(f">CLIENT:{kind},", ">CLIENT:ENV,END", timeout=20)
    fields = head.split(",")
    env: dict[str, str] = {}
    for line in lines[:-1]:
        assert line.startswith(">CLIENT:ENV,"), line
        name, _, value = line[len(">CLIENT:ENV,"):].partition("=")
        env[name] = value
    return int(fields[1]), int(fields[2]) if len(fields) > 2 else -1, env


@pytest.mark.parametrize("kind", ["stock", "ours"])
def test_client_auth_approves_one_and_denies_another(netns_pair: NetnsPair, tmp_path: Path,
                                                     kind: str) -> None:
    from tunnel.pki import generate_pki

    pair = netns_pair
    generate_pki(tmp_path / "pki", server_cn="server", client_cns=["client", "bob"], days=2)
    pki = Pki(tmp_path / "pki")
    sock = tmp_path / "mgmt.sock"
    subnet = pair.new_subnet()
    text = server_config(pki=pki, local=pair.addr_a, subnet=subnet, cipher="AES-256-GCM",
                         extra=[f"management {sock} unix", "management-client-auth",
                                "reneg-sec 8"])
    with start_peer(pair, pair.ns_a, kind=kind, role="server", workdir=tmp_path,
                    config_text=text) as server:
        server.wait_up()
        m = MgmtClient.connect(str(sock))
        m.read_line()  # >INFO
        # management-client-auth needs the client's username/password, as stock requires.
        (tmp_path / "up.txt").write_text("client\nsecret-1\n")
        good = client_config(pki=pki, remote=pair.addr_a, cipher="AES-256-GCM",
                             extra=[f"auth-user-pass {tmp_path / 'up.txt'}"])
        with start_peer(pair, pair.ns_b, kind="stock", role="client", workdir=tmp_path,
                        config_text=good) as client:
            cid, kid, env = read_client_event(m, "CONNECT")
            assert env["common_name"] == "client" and env["untrusted_ip"] == str(pair.addr_b)
            assert "IV_VER" in env and "n_clients" in env
            assert (env["username"], env["password"]) == ("client", "secret-1")
            time.sleep(1.0)
            assert "Initialization Sequence Completed" not in client.log(), "in before verdict"
            # the body is the client's config, as a client-connect/ccd file would give it
            m.send(f"client-auth {cid} {kid}")
            m.send('push "route 192.0.2.0 255.255.255.0"')
            assert m.command("END") == ["SUCCESS: client-auth command succeeded"]
            client.wait_up(20)
            established, _, _ = read_client_event(m, "ESTABLISHED")
            assert established == cid
            assert wait_for(lambda: "route 192.0.2.0 255.255.255.0" in client.log(), 5)
            assert ping(pair, pair.ns_b, subnet[1], count=3).received == 3
            address = m.wait_notification(f">CLIENT:ADDRESS,{cid},", 5)
            assert address.endswith(",1") and address.split(",")[2].startswith(
                str(subnet.network_address)[:-1])

            bob_text = good.replace("client.crt", "bob.crt").replace("client.key", "bob.key")
            (tmp_path / "bob").mkdir()
            with start_peer(pair, pair.ns_b, kind="stock", role="client",
                            workdir=tmp_path / "bob", config_text=bob_text) as bob:
                bob_cid, bob_kid, bob_env = read_client_event(m, "CONNECT")
                assert bob_env["common_name"] == "bob" and bob_cid != cid
                assert m.command(f'client-deny {bob_cid} {bob_kid} "not on the list" '
                                 '"Go away"') == ["SUCCESS: client-deny command succeeded"]
                assert wait_for(lambda: bob.proc.poll() is not None, 20), bob.tail()
                assert "AUTH_FAILED,Go away" in bob.log(), bob.tail()
                assert "Initialization Sequence Completed" not in bob.log()
            # the approved client is unaffected; its renegotiation asks again (REAUTH)
            assert ping(pair, pair.ns_b, subnet[1], count=3).received == 3
            re_cid, re_kid, re_env = read_client_event(m, "REAUTH")
            assert (re_cid, re_env["common_name"]) == (cid, "client") and re_kid > kid
            assert m.command(f"client-auth-nt {re_cid} {re_kid}") == [
                "SUCCESS: client-auth command succeeded"]
            assert wait_for(lambda: "Control Channel:" in client.log().split(
                "Initialization Sequence Completed", 1)[1], 15), client.tail()
            assert ping(pair, pair.ns_b, subnet[1], count=3).received == 3
            assert m.command("client-auth-nt 99 0") == ["ERROR: client-auth command failed"]
            print(f"{kind} server: client cid={cid} approved, bob cid={bob_cid} denied "
                  f"(stock client saw 'AUTH_FAILED,Go away')")
        print("\n".join(line for line in m.raw.decode().splitlines()
                        if line.startswith(">CLIENT:") and ":ENV," not in line))
        m.close()
