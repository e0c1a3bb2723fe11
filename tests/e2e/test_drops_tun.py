"""Replayed and tampered data packets against `tunnel server`: counted by cause in the status
file and logged, rate-limited (mute-replay-warnings silences the replay lines).

Data packets the client really sent are captured on the server's veth (AF_PACKET, inside the
server's namespace), then sent again from the client's namespace as they were (replays) and
with a flipped byte (tampered), as an attacker on the path would.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from tests.e2e.test_ours_tun import (
    _CLIENT_ADDRESS,
    PORT,
    START_TIMEOUT,
    _spawn,
    _wait_log,
    _write_configs,
)
from tests.netns import NetnsPair, wait_for

pytestmark = [pytest.mark.root, pytest.mark.ping]

_ETH_P_ALL = 0x0003
_SENDER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for line in sys.stdin:
    sock.sendto(bytes.fromhex(line.strip()), (sys.argv[1], int(sys.argv[2])))
"""


def _capture_data_packets(pair: NetnsPair, ping_to: str) -> list[bytes]:
    with pair.entered(pair.ns_a):
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    try:
        sniffer.bind((pair.veth_a, 0))
        sniffer.setblocking(False)
        assert pair.ping(pair.ns_b, ping_to, count=10)
        payloads = []
        while True:
            try:
                frame = sniffer.recv(65535)
            except BlockingIOError:
                break
            if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            ihl = (frame[14] & 0x0F) * 4
            udp = 14 + ihl
            if struct.unpack_from("!H", frame, udp + 2)[0] != PORT:
                continue
            payload = frame[udp + 8 :]
            if payload and payload[0] >> 3 == 9:  # P_DATA_V2
                payloads.append(payload)
        return payloads
    finally:
        sniffer.close()


def _drops(status: Path) -> dict[str, int]:
    """The DROP_STATS row of a status-version 2 file, by column name."""
    names: list[str] = []
    for line in status.read_text().splitlines():
        if line.startswith("HEADER,DROP_STATS,"):
            names = line.split(",")[2:]
        elif line.startswith("DROP_STATS,"):
            return dict(zip(names, map(int, line.split(",")[1:]), strict=True))
    return {}


@pytest.mark.parametrize("mute_replays", [False, True])
def test_replayed_and_tampered_packets_are_counted_and_logged(
    netns_pair: NetnsPair, tmp_path: Path, mute_replays: bool
) -> None:
    pair = netns_pair
    extra = "verb 3\n" + ("mute-replay-warnings\n" if mute_replays else "")
    server_conf, client_conf, net, status = _write_configs(pair, tmp_path, server_extra=extra)
    server = _spawn(pair, pair.ns_a, "server", server_conf)
    assert _wait_log(pair, server, "Initialization Sequence Completed", START_TIMEOUT)
    client = _spawn(pair, pair.ns_b, "client", client_conf)
    assert _wait_log(pair, client, "Initialization Sequence Completed", START_TIMEOUT), (
        pair.log(server) + pair.log(client))
    assert _CLIENT_ADDRESS.search(pair.log(client))
    captured = _capture_data_packets(pair, str(net[1]))
    assert len(captured) >= 10, len(captured)
    replays = [p for _ in range(40) for p in captured[:10]]  # 400
    tampered = []
    for i in range(450):
        bad = bytearray(captured[i % 10])
        bad[-1 - i % 16] ^= 0x20
        tampered.append(bytes(bad))
    lines = "\n".join(p.hex() for p in replays + tampered) + "\n"
    sent = pair.run(pair.ns_b, *pair.python_argv(), "-c", _SENDER, str(pair.addr_a), str(PORT),
                    input=lines, timeout=30)
    assert sent.returncode == 0, sent.stderr

    def counted() -> bool:
        drops = _drops(status)
        return drops.get("Replay", 0) >= 400 and drops.get("Auth Failure", 0) >= 450

    assert wait_for(counted, 10), (_drops(status), pair.log(server))
    log = pair.log(server)
    replay_lines = [ln for ln in log.splitlines() if "replay: AEAD Decrypt error" in ln]
    auth_lines = [ln for ln in log.splitlines() if "auth failure: AEAD Decrypt error" in ln]
    assert 1 <= len(auth_lines) <= 20, log  # logged, and rate-limited (850 did arrive)
    if mute_replays:
        assert not replay_lines, log
    else:
        assert 1 <= len(replay_lines) <= 20, log
        assert "--mute-replay-warnings" in replay_lines[0]
    assert pair.ping(pair.ns_b, str(net[1]))  # the real client is unharmed
