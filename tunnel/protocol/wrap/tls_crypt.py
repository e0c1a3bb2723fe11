"""`tls-crypt`: every control packet encrypted and authenticated (`tls_crypt.c:
tls_crypt_wrap()`, `tls_crypt_unwrap()`).

```
wire: op|kid (1) | own sid (8) | pid (4) | time (4) | tag (32) | AES-256-CTR(acks | msg pid | data)
tag  = HMAC-SHA256(Ka, op|kid | own sid | pid | time | plaintext); CTR IV = tag[0:16]
```

Keys: a static key file, the server in direction 0 and the client in direction 1 (fixed,
`tls_crypt_init_key()`); Ke is the direction's cipher slot cut to 32 bytes, Ka its HMAC slot
cut to 32. tls-crypt-v2 uses the same wrap with the per-client key. Seal and open work in place
with Buffer reads and prepends: the 40 bytes of packet-id and tag go into the headroom (and
`op|sid` in front of them), the payload is encrypted where it lies.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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
from tunnel.protocol.wrap.keyfile import DirectionKeys, direction_keys

__all__ = ["TAG_LEN", "TLS_CRYPT_OVERHEAD", "TlsCryptWrap"]

TAG_LEN = 32
TLS_CRYPT_OVERHEAD = LONG_PID_LEN + TAG_LEN
_KEY_LEN = 32
_IV_LEN = 16
_TAG_AT = OP_SID_LEN + LONG_PID_LEN  # where the tag starts in the wire header
_HEAD = _TAG_AT + TAG_LEN  # op|sid + packet-id + tag: where the ciphertext starts


class TlsCryptWrap(ControlWrap):
    """tls-crypt with one key2 in one role (the server uses direction 0, the client 1)."""

    name = "tls-crypt"
    overhead = TLS_CRYPT_OVERHEAD

    @property
    def reserved(self) -> int:
        return TLS_CRYPT_OVERHEAD + _IV_LEN  # tls_crypt_buf_overhead(): + TLS_CRYPT_BLOCK_SIZE

    def __init__(self, keys: DirectionKeys) -> None:
        self._send_cipher = algorithms.AES(keys.send_cipher[:_KEY_LEN])
        self._recv_cipher = algorithms.AES(keys.recv_cipher[:_KEY_LEN])
        self._send_mac = hmac.new(keys.send_hmac[:_KEY_LEN], digestmod=hashlib.sha256)
        self._recv_mac = hmac.new(keys.recv_hmac[:_KEY_LEN], digestmod=hashlib.sha256)

    @classmethod
    def from_key(cls, key: bytes, *, server: bool) -> TlsCryptWrap:
        wrap = cls(direction_keys(key, 0 if server else 1))
        wrap.original_key = key
        return wrap

    def seal(self, buf: Buffer, packet_id: int, timestamp: int) -> None:
        # [op sid][plain] -> [op sid][pid time][tag][cipher]: op|sid is read off the front, the
        # payload encrypted where it lies, then the new header (op|sid, packet-id, tag) is
        # prepended into the headroom in one reservation.
        pid = pack_long_pid(packet_id, timestamp)
        check_room(buf, TLS_CRYPT_OVERHEAD)
        op_sid = buf.read(OP_SID_LEN).tobytes()
        plain = buf.data
        mac = self._send_mac.copy()
        mac.update(op_sid)
        mac.update(pid)
        mac.update(plain)
        tag = mac.digest()
        encryptor = Cipher(self._send_cipher, modes.CTR(tag[:_IV_LEN])).encryptor()
        plain[:] = encryptor.update(plain)
        head = buf.reserve_head(_HEAD)
        head[:OP_SID_LEN] = op_sid
        head[OP_SID_LEN:_TAG_AT] = pid
        head[_TAG_AT:] = tag

    def open(self, buf: Buffer) -> Opened | None:
        offset, size = buf.offset, len(buf)
        try:
            head = buf.read(_HEAD)  # op|sid, packet-id, tag
        except BoundsError:  # shorter than op|sid and the wrap's header
            return None
        tag = head[_TAG_AT:].tobytes()
        cipher = buf.data
        plain = Cipher(self._recv_cipher, modes.CTR(tag[:_IV_LEN])).decryptor().update(cipher)
        mac = self._recv_mac.copy()
        mac.update(head[:_TAG_AT])  # op|sid, packet-id
        mac.update(plain)
        if not hmac.compare_digest(mac.digest(), tag):
            restore(buf, offset, size)
            return None
        packet_id, timestamp = LONG_PID.unpack(head[OP_SID_LEN:_TAG_AT])
        cipher[:] = plain
        buf.prepend(head[:OP_SID_LEN].tobytes())  # [op sid][plain]: op|sid back in front
        return Opened(packet_id, timestamp, self)
