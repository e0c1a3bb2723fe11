"""Keepalive and OCC: the control-rate messages that travel inside the data channel.

`--ping N` sends the 16-byte ping magic when nothing was sent for N seconds; `--ping-restart N`
ends (client: restarts) the session when nothing arrived for N seconds (forward.c,
`check_ping_send_dowork`, `check_ping_restart_dowork`). A server may push both. OCC messages
(occ.c) start with their own 16-byte magic: a request is answered with our options string, an
OCC_EXIT (explicit-exit-notify without the cc-exit protocol flag) ends the session.

`Keepalive` is only the policy: the activity times it compares against (`Session.last_rx`,
`last_tx`) belong to the session, whose receive path updates them per packet.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from tunnel.protocol.constants import OCC_EXIT, OCC_MAGIC, OCC_REPLY, OCC_REQUEST, PING_MAGIC

__all__ = [
    "OCC_EXIT_MESSAGE",
    "OCC_FIRST",
    "OCC_SIZE",
    "PING_SIZE",
    "Keepalive",
    "KeepaliveDue",
    "OccKind",
    "occ_kind",
    "occ_reply",
]

PING_SIZE: Final = len(PING_MAGIC)
OCC_SIZE: Final = len(OCC_MAGIC)
OCC_FIRST: Final = OCC_MAGIC[0]  # never an IP version nibble: rules OCC out with one byte compare
OCC_EXIT_MESSAGE: Final = OCC_MAGIC + bytes([OCC_EXIT])


class KeepaliveDue(Enum):
    NOTHING = "nothing"
    PING = "ping"  # send a ping now
    RESTART = "restart"  # ping-restart: the peer has been silent too long


class Keepalive:
    """The ping / ping-restart intervals of one session (0 disables either)."""

    __slots__ = ("ping", "ping_restart")

    def __init__(self, ping: float, ping_restart: float) -> None:
        self.ping = ping
        self.ping_restart = ping_restart

    def apply_push(self, ping: int | None, ping_restart: int | None) -> None:
        """The server pushed `ping` / `ping-restart`: they replace the configured ones."""
        if ping is not None:
            self.ping = float(ping)
        if ping_restart is not None:
            self.ping_restart = float(ping_restart)

    def due(self, now: float, last_rx: float, last_tx: float, sending: bool) -> KeepaliveDue:
        """What is due now; pings only once there is a data key to send them with."""
        if self.ping_restart > 0 and now - last_rx >= self.ping_restart:
            return KeepaliveDue.RESTART
        if self.ping > 0 and sending and now - last_tx >= self.ping:
            return KeepaliveDue.PING
        return KeepaliveDue.NOTHING

    def next_deadline(self, last_rx: float, last_tx: float, sending: bool) -> float | None:
        """The earliest of the ping deadline (only while `sending`) and the ping-restart one
        (None: neither applies); a server asks this once per session per timer fire."""
        ping, restart = self.ping, self.ping_restart
        at = last_tx + ping if ping > 0 and sending else None
        if restart > 0:
            due = last_rx + restart
            if at is None or due < at:
                at = due
        return at


class OccKind(Enum):
    REQUEST = OCC_REQUEST
    REPLY = OCC_REPLY
    EXIT = OCC_EXIT
    OTHER = -1


def occ_kind(payload: bytes | bytearray | memoryview) -> OccKind:
    """The kind of an OCC message (payload starts with OCC_MAGIC; a bare magic is OTHER)."""
    if len(payload) <= OCC_SIZE:
        return OccKind.OTHER
    kind = payload[OCC_SIZE]
    if kind == OCC_REQUEST:
        return OccKind.REQUEST
    if kind == OCC_EXIT:
        return OccKind.EXIT
    if kind == OCC_REPLY:
        return OccKind.REPLY
    return OccKind.OTHER


def occ_reply(options_string: str) -> bytes:
    """The answer to an OCC_REQUEST: our options string, NUL-terminated (occ.c)."""
    return OCC_MAGIC + bytes([OCC_REPLY]) + options_string.encode() + b"\0"
