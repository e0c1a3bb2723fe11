"""`tls-crypt`: every control packet encrypted and authenticated (`tls_crypt.c:
tls_crypt_wrap()`, `tls_crypt_unwrap()`).

```
wire: op|kid (1) | own sid (8) | pid (4) | time (4) | tag (32) | AES-256-CTR(acks | msg pid | data)
tag  = HMAC-SHA256(Ka, op|kid | own sid | pid | time | plaintext); CTR IV = tag[0:16]
```

Keys: a static key file, the server in direction 0 and the client in direction 1 (fixed,
`tls_crypt_init_key()`); Ke is the direction's cipher slot cut to 32 bytes, Ka its HMAC slot
cut to 32. tls-crypt-v2 uses the same wrap with the per-client key. Seal and open work in place:
the 40 bytes of packet-id and tag go into the headroom, the payload is encrypted where it lies.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core import Buffer
from tunnel.protocol.wrap.base import LONG_PID, LONG_PID_LEN, OP_SID_LEN, ControlWrap, Opened
from tunnel.protocol.wrap.keyfile import DirectionKeys, direction_keys

__all__ = ["TAG_LEN", "TLS_CRYPT_OVERHEAD", "TlsCryptWrap"]

TAG_LEN = 32
TLS_CRYPT_OVERHEAD = LONG_PID_LEN + TAG_LEN
_KEY_LEN = 32
_IV_LEN = 16
_HEAD = OP_SID_LEN + TLS_CRYPT_OVERHEAD  # where the ciphertext starts


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
        buf.reserve_head(TLS_CRYPT_OVERHEAD)
        view = buf.data
        # [40 new][op sid][plain] -> [op sid][pid time][tag][cipher]; the payload stays put.
        view[0:OP_SID_LEN] = view[TLS_CRYPT_OVERHEAD:_HEAD]
        LONG_PID.pack_into(view, OP_SID_LEN, packet_id, timestamp)
        mac = self._send_mac.copy()
        mac.update(view[0 : OP_SID_LEN + LONG_PID_LEN])
        mac.update(view[_HEAD:])
        tag = mac.digest()
        view[OP_SID_LEN + LONG_PID_LEN : _HEAD] = tag
        encryptor = Cipher(self._send_cipher, modes.CTR(tag[:_IV_LEN])).encryptor()
        view[_HEAD:] = encryptor.update(view[_HEAD:])

    def open(self, buf: Buffer) -> Opened | None:
        view = buf.data
        if len(view) < _HEAD:
            return None
        tag = bytes(view[OP_SID_LEN + LONG_PID_LEN : _HEAD])
        decryptor = Cipher(self._recv_cipher, modes.CTR(tag[:_IV_LEN])).decryptor()
        plain = decryptor.update(view[_HEAD:])
        mac = self._recv_mac.copy()
        mac.update(view[0 : OP_SID_LEN + LONG_PID_LEN])
        mac.update(plain)
        if not hmac.compare_digest(mac.digest(), tag):
            return None
        packet_id, timestamp = LONG_PID.unpack_from(view, OP_SID_LEN)
        view[_HEAD:] = plain
        view[TLS_CRYPT_OVERHEAD:_HEAD] = bytes(view[0:OP_SID_LEN])
        buf.advance(TLS_CRYPT_OVERHEAD)
        return Opened(packet_id, timestamp, self)
