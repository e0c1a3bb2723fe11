"""The 2.6 stateless HMAC cookie: a server session id that proves the client saw our reset.

A 2.6 UDP server keeps no state for a HARD_RESET_CLIENT_V2. It answers with a server session id
computed from the client's address, its session id and a coarse time slot, and creates the
client instance only when a later packet from the same address echoes that id in its ACK
block (`ssl_pkt.c: calculate_session_id_hmac(), check_session_id_hmac()`, `mudp.c:
do_pre_decrypt_check()`; wire doc 4.3). That bounds what a spoofed-source flood can allocate.

Only our own server computes and checks these ids, so the exact input packing is ours to choose;
we follow OpenVPN's shape (slot, address, port, client sid) with a portable packing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct

__all__ = ["COOKIE_KEY_LEN", "CookieJar"]

COOKIE_KEY_LEN = 32  # one SHA-256 block's worth of key is plenty; OpenVPN uses a random key too
_MIN_KEY_LEN = 16
_SID_LEN = 8
# check_session_id_hmac() accepts the current slot and these neighbours, so a client has
# 60-90 s (with hand-window 60) between our reset and its answer, and a small clock step does
# not invalidate ids in flight.
_ACCEPTED_OFFSETS = (-2, -1, 0, 1)
_SLOT = struct.Struct("!I")
_PORT = struct.Struct("!H")


class CookieJar:
    """Issues and checks HMAC-derived server session ids. Sans-I/O: the caller passes `now`."""

    __slots__ = ("_key", "hand_window", "slot_length")

    def __init__(self, key: bytes | None = None, *, hand_window: float = 60.0) -> None:
        if key is None:
            # Random per process, as OpenVPN's: ids issued before a restart are simply refused
            # and the client retries its reset.
            key = os.urandom(COOKIE_KEY_LEN)
        if len(key) < _MIN_KEY_LEN:
            raise ValueError(f"cookie key must be at least {_MIN_KEY_LEN} bytes")
        if not hand_window > 0:
            raise ValueError(f"hand_window must be > 0, not {hand_window!r}")
        self._key = bytes(key)
        self.hand_window = float(hand_window)
        # OpenVPN: now / ((handwindow + 1) / 2) in C integer arithmetic, i.e. 30 s slots for
        # the default 60 s hand-window.
        self.slot_length = float(max(1, (int(hand_window) + 1) // 2))

    def __repr__(self) -> str:
        return f"CookieJar(hand_window={self.hand_window}, key=<hidden>)"

    def slot(self, now: float) -> int:
        """The time slot that `now` falls in."""
        return int(now // self.slot_length)

    def _sid_for_slot(self, addr: tuple[str, int], client_sid: bytes, slot: int) -> bytes:
        if len(client_sid) != _SID_LEN:
            raise ValueError(f"client session id must be {_SID_LEN} bytes")
        return self._sid_for(_address_bytes(addr), client_sid, slot)

    def _sid_for(self, address: bytes, client_sid: bytes, slot: int) -> bytes:
        # `address` is the packed IP and port (`_address_bytes`). The address length (4 or 16)
        # differs by family and the sid length is fixed, so the concatenation is unambiguous
        # without a separate family byte.
        message = _SLOT.pack(slot & 0xFFFFFFFF) + address + client_sid
        sid = hmac.digest(self._key, message, hashlib.sha256)[:_SID_LEN]
        if sid == bytes(_SID_LEN):
            # An all-zero session id means "undefined" (session_id.h); map the 2^-64 case to a
            # fixed non-zero value so issuing and verifying still agree.
            sid = bytes(_SID_LEN - 1) + b"\x01"
        return sid

    def server_session_id(self, addr: tuple[str, int], client_sid: bytes, now: float) -> bytes:
        """The 8-byte session id to put in our HARD_RESET_SERVER_V2 answering ``client_sid``.

        ``addr`` is the client's (host, port) as the socket reported it; raises ValueError for
        a host that is not an IP address or a client sid that is not 8 bytes.
        """
        return self._sid_for_slot(addr, client_sid, self.slot(now))

    # The name used in docs/INTERNALS.md.
    session_id_for = server_session_id

    def verify(
        self, addr: tuple[str, int], client_sid: bytes, server_sid: bytes, now: float
    ) -> bool:
        """True if ``server_sid`` is what we issued to this address and client sid recently.

        The id must come from slot ``current + offset`` for offset -2..+1
        (`check_session_id_hmac()`); comparisons are constant-time.
        """
        if len(server_sid) != _SID_LEN or len(client_sid) != _SID_LEN:
            return False
        try:
            address = _address_bytes(addr)  # parsed once for every candidate slot
        except ValueError:
            return False
        current = self.slot(now)
        matched = False
        for offset in _ACCEPTED_OFFSETS:
            expected = self._sid_for(address, client_sid, current + offset)
            # No early exit: every candidate is computed and compared the same way.
            matched |= hmac.compare_digest(expected, server_sid)
        return matched


def _address_bytes(addr: tuple[str, int]) -> bytes:
    """The packed IP and port of (host, port); ValueError for a host that is no IP address."""
    return ipaddress.ip_address(addr[0]).packed + _PORT.pack(addr[1])
