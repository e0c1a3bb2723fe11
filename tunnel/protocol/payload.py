"""Classifying a decrypted data-channel payload: keepalive ping, OCC message or IP packet.

The order and the match rules are OpenVPN's (`forward.c: process_incoming_link_part2()`):
a ping is the 16-byte magic and nothing else (`ping.h: is_ping_msg()`), an OCC message merely
starts with its magic (`occ.h: is_occ_msg()`), anything else goes to the TUN device.

Both tests run on every received packet, so they compare a memoryview with a constant in place
(at most one slice), never building a `bytes` copy of the payload.
"""

from __future__ import annotations

from typing import Final

from tunnel.protocol.constants import OCC_MAGIC, PING_MAGIC

__all__ = ["is_occ", "is_ping"]

_PING_SIZE: Final = len(PING_MAGIC)
_OCC_SIZE: Final = len(OCC_MAGIC)


def is_ping(payload: memoryview | bytes | bytearray) -> bool:
    """True when the payload is exactly OpenVPN's keepalive ping."""
    return len(payload) == _PING_SIZE and payload == PING_MAGIC


def is_occ(payload: memoryview | bytes | bytearray) -> bool:
    """True when the payload starts with the OCC magic (a type byte and a body follow)."""
    return len(payload) >= _OCC_SIZE and payload[:_OCC_SIZE] == OCC_MAGIC
