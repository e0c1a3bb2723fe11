"""tls-crypt-v2 keys (`tls_crypt.c`): the server key, client keys and the wrapped client key.

* server key: PEM "OpenVPN tls-crypt-v2 server key" of one `struct key` (64 cipher + 64 HMAC
  bytes); Ke = cipher[0:32] (AES-256-CTR), Ka = hmac[0:32] (HMAC-SHA256).
* client key: PEM "OpenVPN tls-crypt-v2 client key" of Kc (a 256-byte key2, used like a
  tls-crypt key) followed by WKc, the client key wrapped for the server:

```
WKc = tag (32) | AES-256-CTR(Ke, IV = tag[0:16], Kc | metadata) | len (u16, all of WKc)
tag = HMAC-SHA256(Ka, len | Kc | metadata)
metadata = type (1: 0x00 user data, 0x01 timestamp) | value (user bytes, or an i64 BE time)
```

`tls_crypt_v2_wrap_client_key()`, `tls_crypt_v2_unwrap_client_key()`,
`tls_crypt_v2_write_client_key_file()`. PEM as OpenSSL's `PEM_write_bio` writes it (base64 in
64-character lines), which is what `openvpn --genkey` produces.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tunnel.protocol.wrap.keyfile import KEY2_LEN, KeyFileError

__all__ = [
    "CLIENT_PEM",
    "MAX_METADATA_LEN",
    "MAX_WKC_LEN",
    "METADATA_TIMESTAMP",
    "METADATA_USER",
    "SERVER_PEM",
    "ClientKey",
    "ServerKey",
    "format_pem",
    "generate_client_key",
    "parse_pem",
    "unwrap_client_key",
    "wrap_client_key",
]

SERVER_PEM = "OpenVPN tls-crypt-v2 server key"
CLIENT_PEM = "OpenVPN tls-crypt-v2 client key"
SERVER_KEY_LEN = 128
TAG_LEN = 32
MAX_WKC_LEN = 1024
MAX_METADATA_LEN = MAX_WKC_LEN - (KEY2_LEN + TAG_LEN + 2)  # 734
METADATA_USER = 0x00
METADATA_TIMESTAMP = 0x01
_LEN = struct.Struct("!H")
_TIME = struct.Struct("!q")


def format_pem(name: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    body = "\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
    return f"-----BEGIN {name}-----\n{body}\n-----END {name}-----\n"


def parse_pem(text: str, name: str) -> bytes:
    """The bytes of the PEM block `name`; ``KeyFileError`` with the line of the problem."""
    lines = text.splitlines()
    begin, end = f"-----BEGIN {name}-----", f"-----END {name}-----"
    start = next((i for i, line in enumerate(lines) if line.strip() == begin), None)
    if start is None:
        raise KeyFileError(0, f"no '{begin}' line")
    chunks: list[str] = []
    for index in range(start + 1, len(lines)):
        line = lines[index].strip()
        if line == end:
            try:
                return base64.b64decode("".join(chunks), validate=True)
            except (binascii.Error, ValueError):
                raise KeyFileError(index + 1, "the base64 data does not decode") from None
        if any(not (c.isalnum() or c in "+/=") for c in line):
            raise KeyFileError(index + 1, "not base64")
        chunks.append(line)
    raise KeyFileError(len(lines), f"no '{end}' line: the key is truncated")


@dataclass(frozen=True, slots=True)
class ServerKey:
    cipher: bytes  # Ke, 32 bytes
    hmac: bytes  # Ka, 32 bytes
    raw: bytes  # the 128 bytes of the file

    @classmethod
    def from_bytes(cls, raw: bytes) -> ServerKey:
        if len(raw) != SERVER_KEY_LEN:
            raise KeyFileError(0, f"server key is {len(raw)} bytes, {SERVER_KEY_LEN} expected")
        return cls(raw[:32], raw[64:96], raw)

    @classmethod
    def parse(cls, text: str) -> ServerKey:
        return cls.from_bytes(parse_pem(text, SERVER_PEM))

    @classmethod
    def generate(cls) -> ServerKey:
        return cls.from_bytes(os.urandom(SERVER_KEY_LEN))

    def pem(self) -> str:
        return format_pem(SERVER_PEM, self.raw)


@dataclass(frozen=True, slots=True)
class ClientKey:
    key: bytes  # Kc, a 256-byte key2
    wkc: bytes  # the wrapped key the client sends to the server

    @classmethod
    def parse(cls, text: str) -> ClientKey:
        data = parse_pem(text, CLIENT_PEM)
        if len(data) < KEY2_LEN + TAG_LEN + 2:
            raise KeyFileError(0, f"client key is {len(data)} bytes: too short (truncated?)")
        key, wkc = data[:KEY2_LEN], data[KEY2_LEN:]
        if len(wkc) > MAX_WKC_LEN or _LEN.unpack_from(wkc, len(wkc) - 2)[0] != len(wkc):
            raise KeyFileError(0, "the wrapped client key has a bad length")
        return cls(key, wkc)

    def pem(self) -> str:
        return format_pem(CLIENT_PEM, self.key + self.wkc)


def _ctr(key: bytes, tag: bytes) -> Cipher[modes.CTR]:
    return Cipher(algorithms.AES(key), modes.CTR(tag[:16]))


def wrap_client_key(server: ServerKey, client_key: bytes, metadata: bytes) -> bytes:
    if len(client_key) != KEY2_LEN:
        raise ValueError(f"a client key is {KEY2_LEN} bytes")
    if not 1 <= len(metadata) <= MAX_METADATA_LEN:
        raise ValueError(f"metadata must be 1..{MAX_METADATA_LEN} bytes (type byte included)")
    net_len = _LEN.pack(TAG_LEN + KEY2_LEN + len(metadata) + 2)
    tag = hmac.digest(server.hmac, net_len + client_key + metadata, hashlib.sha256)
    encryptor = _ctr(server.cipher, tag).encryptor()
    return tag + encryptor.update(client_key + metadata) + encryptor.finalize() + net_len


def unwrap_client_key(server: ServerKey, wkc: bytes | memoryview) -> tuple[bytes, bytes] | None:
    """(Kc, metadata) of a wrapped client key, or None if it is not ours / malformed."""
    size = len(wkc)
    if not TAG_LEN + KEY2_LEN + 2 <= size <= MAX_WKC_LEN:
        return None
    net_len = bytes(wkc[size - 2 :])
    if _LEN.unpack(net_len)[0] != size:
        return None
    tag = bytes(wkc[:TAG_LEN])
    plain = _ctr(server.cipher, tag).decryptor().update(wkc[TAG_LEN : size - 2])
    expected = hmac.digest(server.hmac, net_len + plain, hashlib.sha256)
    if not hmac.compare_digest(expected, tag):
        return None
    return plain[:KEY2_LEN], plain[KEY2_LEN:]


def timestamp_metadata(unix_time: int) -> bytes:
    return bytes([METADATA_TIMESTAMP]) + _TIME.pack(unix_time)


def metadata_time(metadata: bytes) -> int | None:
    """The creation time in timestamp metadata; None for user metadata."""
    if len(metadata) < 9 or metadata[0] != METADATA_TIMESTAMP:
        return None
    return int(_TIME.unpack_from(metadata, 1)[0])


def generate_client_key(server: ServerKey, *, user_metadata: bytes | None, now: int) -> ClientKey:
    """A new client key: user metadata (type 0) if given, else the creation time (type 1)."""
    if user_metadata is not None:
        if len(user_metadata) > MAX_METADATA_LEN - 1:
            raise ValueError(f"metadata too long ({len(user_metadata)} bytes, max "
                             f"{MAX_METADATA_LEN - 1} bytes)")
        metadata = bytes([METADATA_USER]) + user_metadata
    else:
        metadata = timestamp_metadata(now)
    key = os.urandom(KEY2_LEN)
    return ClientKey(key, wrap_client_key(server, key, metadata))
