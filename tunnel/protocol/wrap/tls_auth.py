"""`tls-auth`: an HMAC over every control packet (`ssl_pkt.c: swap_hmac()`, `crypto.c:
openvpn_encrypt_v1()` without a cipher).

```
wire:       op|kid (1) | own sid (8) | HMAC (digest) | pid (4) | time (4) | acks | msg pid | data
HMAC input: pid | time | op|kid | own sid | acks | msg pid | data
```

The HMAC key is the direction's 64-byte HMAC slot cut to the digest size (`auth`, SHA1 by
default). Sealing prepends HMAC + packet-id into the headroom and moves `op|sid` in front of
them; opening verifies and moves it back, both in place.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from core import Buffer
from tunnel.protocol.wrap.base import LONG_PID, LONG_PID_LEN, OP_SID_LEN, ControlWrap, Opened
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
        extra = self.overhead
        size = self.digest_size
        buf.reserve_head(extra)
        view = buf.data
        # [extra new][op sid][rest] -> [op sid][hmac][pid time][rest]; rest stays where it is.
        view[0:OP_SID_LEN] = view[extra : extra + OP_SID_LEN]
        pid_at = OP_SID_LEN + size
        LONG_PID.pack_into(view, pid_at, packet_id, timestamp)
        mac = self._send.copy()
        mac.update(view[pid_at : pid_at + LONG_PID_LEN])
        mac.update(view[0:OP_SID_LEN])
        mac.update(view[pid_at + LONG_PID_LEN :])
        view[OP_SID_LEN:pid_at] = mac.digest()

    def open(self, buf: Buffer) -> Opened | None:
        extra = self.overhead
        size = self.digest_size
        view = buf.data
        if len(view) < OP_SID_LEN + extra:
            return None
        pid_at = OP_SID_LEN + size
        mac = self._recv.copy()
        mac.update(view[pid_at : pid_at + LONG_PID_LEN])
        mac.update(view[0:OP_SID_LEN])
        mac.update(view[pid_at + LONG_PID_LEN :])
        if not hmac.compare_digest(mac.digest(), view[OP_SID_LEN:pid_at]):
            return None
        packet_id, timestamp = LONG_PID.unpack_from(view, pid_at)
        # [op sid][hmac][pid time][rest] -> drop the middle; op|sid moves next to rest.
        view[extra : extra + OP_SID_LEN] = bytes(view[0:OP_SID_LEN])
        buf.advance(extra)
        return Opened(packet_id, timestamp, self)
