"""What a decrypted data-channel payload is: keepalive ping, OCC message or a packet for the TUN.

The rules are stock's (`forward.c: process_incoming_link_part2()`): a ping is the 16-byte magic
and nothing else (`ping.h: is_ping_msg()`), an OCC message starts with its magic; anything else
goes to the device. `Session.decrypt` decides it in place on the hot path; these cases run
through a real client/server pair (the server's session seals, the client's decides).
"""

from __future__ import annotations

import pytest

from tests.protocol.harness import Pair
from tunnel.protocol.constants import OCC_MAGIC, OCC_REQUEST, PING_MAGIC
from tunnel.protocol.verdicts import CONSUMED, KEEPALIVE, TO_TUN
from tunnel.runtime import Timers


def _client_verdict(pair: Pair, payload: bytes) -> tuple[int, list[bytes]]:
    session = pair.server.sessions[0]
    buf = pair._buffer(payload)
    try:
        assert session.encrypt(buf, pair.now)
        datagram = bytes(buf.data)
    finally:
        pair.pool.release(buf)
    pair.to_client_tun.clear()
    return pair.to_client(datagram), list(pair.to_client_tun)


@pytest.mark.parametrize(
    ("payload", "verdict"),
    [
        (PING_MAGIC, KEEPALIVE),  # no control step after it (verdicts.py)
        (PING_MAGIC + b"\0", TO_TUN),  # exactly the magic, nothing else
        (PING_MAGIC[:-1], TO_TUN),
        (bytes(16), TO_TUN),
        (OCC_MAGIC + bytes([OCC_REQUEST]), CONSUMED),
        (OCC_MAGIC, CONSUMED),  # a bare magic is OCC (occ.h is_occ_msg matches the head), a no-op
        (OCC_MAGIC[:-1] + b"\0\0", TO_TUN),
        (PING_MAGIC + bytes([OCC_REQUEST]), TO_TUN),
    ],
    ids=["ping", "ping+1", "ping-1", "zeros16", "occ-request", "occ-bare", "occ-cut",
         "ping-prefix"],
)
def test_payload_kind_as_stock(payload: bytes, verdict: int) -> None:
    pair = Pair(timers=Timers(ping=60, ping_restart=120))
    pair.connect()
    got, to_tun = _client_verdict(pair, payload)
    assert got == verdict
    assert to_tun == ([payload] if verdict == TO_TUN else [])
