"""Connection profiles on our client: remotes across protocols, retries, timeouts.

An Access-Server-style profile lists a UDP remote and then a TCP one: when UDP does not get
through, the client falls over to TCP within `server-poll-timeout` (+ `connect-retry`). A
profile whose every remote fails ends after `connect-retry-max` rounds with stock's message.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest

from tests.e2e.openvpn_peer import (
    PeerFailed,
    Pki,
    client_config,
    ping,
    server_config,
    start_peer,
)
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.openvpn, pytest.mark.ping]

POLL_TIMEOUT = 3
CONNECT_RETRY = 1
SILENT_UDP_PORT = 1195  # nothing listens there
TCP_PORT = 1194


def _profile(pki: Pki, remotes: list[str], extra: list[str]) -> str:
    """The usual client config with these remotes instead of its one UDP remote."""
    text = client_config(pki=pki, remote=ipaddress.IPv4Address("192.0.2.1"),
                         cipher="AES-256-GCM")
    lines = [line for line in text.splitlines() if not line.startswith(("remote ", "proto "))]
    return "\n".join([*lines, *remotes, *extra]) + "\n"


@pytest.mark.timeout(120)
def test_unreachable_udp_remote_falls_over_to_the_tcp_one(netns_pair: NetnsPair,
                                                         tmp_path: Path, pki: Pki) -> None:
    pair = netns_pair
    subnet = pair.new_subnet()
    server_text = server_config(pki=pki, local=pair.addr_a, subnet=subnet, cipher="AES-256-GCM",
                                extra=["proto tcp4-server"])
    client_text = _profile(pki, [
        f"remote {pair.addr_a} {SILENT_UDP_PORT} udp",
        f"remote {pair.addr_a} {TCP_PORT} tcp",
    ], [f"server-poll-timeout {POLL_TIMEOUT}", f"connect-retry {CONNECT_RETRY}"])
    with start_peer(pair, pair.ns_a, kind="stock", role="server", config_text=server_text,
                    workdir=tmp_path) as server:
        server.wait_up()
        with start_peer(pair, pair.ns_b, kind="ours", role="client", config_text=client_text,
                        workdir=tmp_path) as client:
            took = client.wait_up(timeout=45)
            log = client.log()
            assert "Server poll timeout, restarting" in log, log
            assert "TCP connection established" in log, log
            # The UDP remote gets POLL_TIMEOUT seconds, then TCP at once (no pause after a
            # poll timeout, as stock); the handshake adds a second or two on a loaded machine.
            assert took < POLL_TIMEOUT + CONNECT_RETRY + 15, (took, log)
            assert wait_for(lambda: ping(pair, pair.ns_b, subnet[1], count=1).ok, 15, 0.2), log
            result = ping(pair, pair.ns_b, subnet[1], count=3)
            assert result.received == 3, result.output
    print(f"\nfallover udp -> tcp: up after {took:.1f} s (server-poll-timeout {POLL_TIMEOUT})")


@pytest.mark.timeout(90)
def test_connect_retry_max_ends_the_client(netns_pair: NetnsPair, tmp_path: Path,
                                           pki: Pki) -> None:
    pair = netns_pair
    client_text = _profile(pki, [
        f"remote {pair.addr_a} {SILENT_UDP_PORT} udp",
        f"remote {pair.addr_a} {SILENT_UDP_PORT + 1} tcp",  # refused at once
    ], [f"server-poll-timeout {POLL_TIMEOUT}", "connect-retry 1", "connect-retry-max 2"])
    started = time.monotonic()
    with start_peer(pair, pair.ns_b, kind="ours", role="client", config_text=client_text,
                    workdir=tmp_path) as client:
        ended = wait_for(lambda: client.proc.poll() is not None, 60, 0.2)
        took = time.monotonic() - started
        if not ended:
            raise PeerFailed(f"still running after 60 s: {client.describe()}")
        log = client.log()
        assert client.proc.returncode == 1, log
        assert "All connections have been connect-retry-max (2) times unsuccessful" in log, log
        assert log.count("Attempting to establish TCP connection") == 2, log
    print(f"\nconnect-retry-max 2: exited after {took:.1f} s")


@pytest.mark.timeout(120)
def test_connection_blocks_with_their_own_options(netns_pair: NetnsPair, tmp_path: Path,
                                                  pki: Pki) -> None:
    """Two <connection> blocks: the UDP one with its own short server-poll-timeout (the global
    one, 60 s, would keep the client on it for a minute), then a TCP one with its own proto
    and mssfix. The client must fall over after the UDP block's timeout."""
    pair = netns_pair
    subnet = pair.new_subnet()
    server_text = server_config(pki=pki, local=pair.addr_a, subnet=subnet, cipher="AES-256-GCM",
                                extra=["proto tcp4-server"])
    client_text = _profile(pki, [], [
        "server-poll-timeout 60",
        "<connection>",
        f"remote {pair.addr_a} {SILENT_UDP_PORT} udp",
        f"server-poll-timeout {POLL_TIMEOUT}",
        "</connection>",
        "<connection>",
        f"remote {pair.addr_a} {TCP_PORT}",
        "proto tcp-client",
        "mssfix 1300",
        "</connection>",
    ])
    with start_peer(pair, pair.ns_a, kind="stock", role="server", config_text=server_text,
                    workdir=tmp_path) as server:
        server.wait_up()
        with start_peer(pair, pair.ns_b, kind="ours", role="client", config_text=client_text,
                        workdir=tmp_path) as client:
            took = client.wait_up(timeout=45)
            log = client.log()
            assert "Server poll timeout, restarting" in log, log
            assert took < POLL_TIMEOUT + 15, (took, log)
            assert wait_for(lambda: ping(pair, pair.ns_b, subnet[1], count=1).ok, 15, 0.2), log
    print(f"\n<connection> blocks udp -> tcp: up after {took:.1f} s")


@pytest.mark.timeout(90)
def test_mixed_profile_uses_its_udp_remote_when_it_answers(netns_pair: NetnsPair,
                                                           tmp_path: Path, pki: Pki) -> None:
    """The same Access-Server-style profile against a UDP server: the first remote answers, so
    the client stays on UDP (through the per-remote link driver) and carries traffic."""
    pair = netns_pair
    subnet = pair.new_subnet()
    server_text = server_config(pki=pki, local=pair.addr_a, subnet=subnet, cipher="AES-256-GCM")
    client_text = _profile(pki, [
        f"remote {pair.addr_a} {TCP_PORT} udp",
        f"remote {pair.addr_a} {SILENT_UDP_PORT} tcp",
    ], [f"server-poll-timeout {POLL_TIMEOUT}"])
    with start_peer(pair, pair.ns_a, kind="stock", role="server", config_text=server_text,
                    workdir=tmp_path) as server:
        server.wait_up()
        with start_peer(pair, pair.ns_b, kind="ours", role="client", config_text=client_text,
                        workdir=tmp_path) as client:
            client.wait_up(timeout=30)
            log = client.log()
            assert "Server poll timeout" not in log and "TCP connection" not in log, log
            assert wait_for(lambda: ping(pair, pair.ns_b, subnet[1], count=1).ok, 15, 0.2), log
            result = ping(pair, pair.ns_b, subnet[1], count=5)
            assert result.received == 5, result.output


PROXY_PORT = 3128


@pytest.mark.timeout(120)
def test_http_proxy_with_basic_auth(netns_pair: NetnsPair, tmp_path: Path, pki: Pki) -> None:
    """A TCP remote through an HTTP CONNECT proxy (Basic auth from a file, a User-Agent): the
    proxy sees the remote's name unresolved and valid credentials; wrong ones get 407 and the
    client does not come up (and says why)."""
    pair = netns_pair
    subnet = pair.new_subnet()
    server_text = server_config(pki=pki, local=pair.addr_a, subnet=subnet, cipher="AES-256-GCM",
                                extra=["proto tcp4-server"])
    proxy_log = tmp_path / "proxy.log"
    proxy = pair.spawn(pair.ns_a, *pair.python_argv(), "-m", "tests.e2e.http_proxy",
                       "--listen", str(pair.addr_a), str(PROXY_PORT), "--user", "alice",
                       "--password", "s3cret", "--seconds", "100", log_path=proxy_log)
    assert wait_for(lambda: "listening" in proxy_log.read_text(), 15, 0.1), proxy_log.read_text()
    try:
        for case, password in (("good", "s3cret"), ("bad", "wrong")):
            auth = tmp_path / f"auth-{case}.txt"
            auth.write_text(f"alice\n{password}\n")
            client_text = _profile(pki, [f"remote {pair.addr_a} {TCP_PORT} tcp"], [
                f"http-proxy {pair.addr_a} {PROXY_PORT} {auth} basic",
                "http-proxy-option AGENT tunnel-test",
            ])
            workdir = tmp_path / case
            workdir.mkdir()
            with start_peer(pair, pair.ns_a, kind="stock", role="server",
                            config_text=server_text, workdir=workdir) as server:
                server.wait_up()
                with start_peer(pair, pair.ns_b, kind="ours", role="client",
                                config_text=client_text, workdir=workdir) as client:
                    if case == "good":
                        client.wait_up(timeout=30)
                        assert wait_for(lambda: ping(pair, pair.ns_b, subnet[1], count=1).ok,
                                        15, 0.2), client.log()
                    else:
                        assert wait_for(lambda: "bad status" in client.log(), 20, 0.2), (
                            client.log())
                        assert "Initialization Sequence Completed" not in client.log()
                        assert "s3cret" not in client.log() and "wrong" not in client.log()
        seen = proxy_log.read_text()
        assert f"CONNECT {pair.addr_a}:{TCP_PORT} auth=ok agent=tunnel-test" in seen, seen
        assert f"CONNECT {pair.addr_a}:{TCP_PORT} auth=bad agent=tunnel-test" in seen, seen
    finally:
        pair.stop(proxy)
