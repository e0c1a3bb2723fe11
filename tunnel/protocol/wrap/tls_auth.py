"""`tls-auth`: an HMAC over every control packet (`ssl_pkt.c: swap_hmac()`, `crypto.c:
openvpn_encrypt_v1()` without a cipher).

```
wire:       op|kid (1) | own sid (8) | HMAC (digest) | pid (4) | time (4) | acks | msg pid | data
HMAC input: pid | time | op|kid | own sid | acks | msg pid | data
```

The HMAC key is the direction's 64-byte HMAC slot cut to the digest size (`auth`, SHA1 by
default). Sealing reads `op|sid` off the front and prepends packet-id, HMAC and `op|sid` into
the headroom; opening reads the header with Buffer reads, verifies, and prepends `op|sid` back
in front of the rest; both in place.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from core import BoundsError, Buffer
from tunnel.protocol.wrap.base import (
    LONG_PID,
    LONG_PID_LEN,
    OP_SID_LEN,
    ControlWrap,
    Opened,
    check_room,
    pack_long_pid,
    restore,
)
from tunnel.protocol.wrap.keyfile import direction_keys

__all__ = ["TLS_AUTH_DIGESTS", "TlsAuthWrap", "canonical_digest"]

# `auth` names as OpenVPN spells them -> hashlib constructor.
TLS_AUTH_DIGESTS: dict[str, Callable[..., Any]] = {
    "SHA1": hashlib.sha1,
    "SHA224": hashlib.sha224,
    "SHA256": hashlib.sha256,
    "SHA384": hashlib.sha384,
    "SHA512": hashlib.sha512,
}


def canonical_digest(name: str) -> str | None:
    """`auth` spelling -> our name ('sha256', 'SHA-256' and 'SHA256' are one digest)."""
    key = name.upper().replace("-", "")
    return key if key in TLS_AUTH_DIGESTS else None


class TlsAuthWrap(ControlWrap):
    """tls-auth with one static key, one direction (0, 1 or None) and one digest."""

    def __init__(self, key: bytes, direction: int | None, digest: str = "SHA1") -> None:
        name = canonical_digest(digest)
        if name is None:
            raise ValueError(f"unsupported tls-auth digest {digest!r}")
        constructor = TLS_AUTH_DIGESTS[name]
        self.digest = name
        self.digest_size = constructor().digest_size
        self.original_key = key
        keys = direction_keys(key, direction)
        # A keyed HMAC object per direction, copied per packet: the key schedule runs once.
        self._send = hmac.new(keys.send_hmac[: self.digest_size], digestmod=constructor)
        self._recv = hmac.new(keys.recv_hmac[: self.digest_size], digestmod=constructor)
        self.name = f"tls-auth {name}"
        self.overhead = self.digest_size + LONG_PID_LEN

    def seal(self, buf: Buffer, packet_id: int, timestamp: int) -> None:
        # [op sid][rest] -> [op sid][hmac][pid time][rest]: op|sid is read off the front, and the
        # new header (op|sid, HMAC, packet-id) is prepended into the headroom in one reservation;
        # rest stays where it is.
        pid = pack_long_pid(packet_id, timestamp)
        check_room(buf, self.overhead)
        op_sid = buf.read(OP_SID_LEN).tobytes()
        mac = self._send.copy()
        mac.update(pid)
        mac.update(op_sid)
        mac.update(buf.data)
        head = buf.reserve_head(OP_SID_LEN + self.overhead)
        pid_at = OP_SID_LEN + self.digest_size
        head[:OP_SID_LEN] = op_sid
        head[OP_SID_LEN:pid_at] = mac.digest()
        head[pid_at:] = pid

    def open(self, buf: Buffer) -> Opened | None:
        offset, size = buf.offset, len(buf)
        try:
            head = buf.read(OP_SID_LEN + self.overhead)  # op|sid, HMAC, packet-id
        except BoundsError:  # shorter than op|sid and the wrap's header
            return None
        pid_at = OP_SID_LEN + self.digest_size
        pid = head[pid_at:]
        mac = self._recv.copy()
        mac.update(pid)
        mac.update(head[:OP_SID_LEN])
        mac.update(buf.data)
        if not hmac.compare_digest(mac.digest(), head[OP_SID_LEN:pid_at]):
            restore(buf, offset, size)
            return None
        packet_id, timestamp = LONG_PID.unpack(pid)
        buf.prepend(head[:OP_SID_LEN].tobytes())  # [op sid][rest]: op|sid back in front
        return Opened(packet_id, timestamp, self)
