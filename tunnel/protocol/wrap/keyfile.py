"""OpenVPN's static key files: `OpenVPN Static key V1` (tls-auth, tls-crypt, `secret`).

```
#
# 2048 bit OpenVPN static key
#
-----BEGIN OpenVPN Static key V1-----
<256 bytes as 16 lines of 32 hex digits>
-----END OpenVPN Static key V1-----
```

The 256 bytes are OpenVPN's `struct key2`: two `struct key` of 64 cipher bytes + 64 HMAC bytes
(`crypto.c: read_key_file()`, `write_key_file()`). A direction picks which half a peer sends
with (`crypto.c: key_direction_state_init()`): direction 0 (KEY_DIRECTION_NORMAL) sends with
keys[0] and receives with keys[1], direction 1 the reverse, no direction uses keys[0] both ways.

Errors are `KeyFileError` with the 1-based line of the key text where the problem is, so the
caller can print one `FILE:LINE: reason` line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "KEY2_LEN",
    "DirectionKeys",
    "KeyFileError",
    "direction_keys",
    "format_static_key",
    "generate_static_key",
    "parse_static_key",
]

KEY2_LEN = 256
KEY_HALF_LEN = 128
CIPHER_SLOT = 64
HMAC_SLOT = 64
_BEGIN = "-----BEGIN OpenVPN Static key V1-----"
_END = "-----END OpenVPN Static key V1-----"
_HEX = frozenset("0123456789abcdefABCDEF")


class KeyFileError(ValueError):
    """A key file that cannot be used; ``line`` is 1-based within the key text (0: none)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def parse_static_key(text: str) -> bytes:
    """The 256 key bytes of an `OpenVPN Static key V1` text; raises ``KeyFileError``.

    Stock reads the hex digits between the markers and ignores white space; it insists on the
    BEGIN marker, the END marker and exactly 256 bytes. Comments only occur before BEGIN.
    """
    lines = text.splitlines()
    begin = next((i for i, line in enumerate(lines) if line.strip() == _BEGIN), None)
    if begin is None:
        raise KeyFileError(0, f"no '{_BEGIN}' line: not an OpenVPN static key")
    digits: list[str] = []
    for index in range(begin + 1, len(lines)):
        line = lines[index].strip()
        if line == _END:
            if len(digits) % 2:
                raise KeyFileError(index + 1, "odd number of hex digits")
            count = len(digits) // 2
            if count != KEY2_LEN:
                raise KeyFileError(
                    index + 1, f"key is {count} bytes, {KEY2_LEN} expected (truncated key?)"
                )
            return bytes.fromhex("".join(digits))
        for char in line:
            if char in _HEX:
                digits.append(char)
            elif not char.isspace():
                raise KeyFileError(index + 1, f"non-hex character {char!r} in the key")
        if len(digits) > 2 * KEY2_LEN:
            raise KeyFileError(index + 1, f"key is longer than {KEY2_LEN} bytes")
    raise KeyFileError(len(lines), f"no '{_END}' line: the key is truncated")


def format_static_key(key: bytes) -> str:
    """The text `openvpn --genkey secret` writes for these 256 bytes."""
    if len(key) != KEY2_LEN:
        raise ValueError(f"a static key is {KEY2_LEN} bytes, not {len(key)}")
    hexed = key.hex()
    body = "\n".join(hexed[i : i + 32] for i in range(0, len(hexed), 32))
    return f"#\n# 2048 bit OpenVPN static key\n#\n{_BEGIN}\n{body}\n{_END}\n"


def generate_static_key() -> bytes:
    return os.urandom(KEY2_LEN)


@dataclass(frozen=True, slots=True)
class DirectionKeys:
    """The key halves one peer uses: 64 cipher + 64 HMAC bytes each way."""

    send_cipher: bytes
    send_hmac: bytes
    recv_cipher: bytes
    recv_hmac: bytes


def _half(key: bytes, index: int) -> tuple[bytes, bytes]:
    base = index * KEY_HALF_LEN
    return key[base : base + CIPHER_SLOT], key[base + CIPHER_SLOT : base + KEY_HALF_LEN]


def direction_keys(key: bytes, direction: int | None) -> DirectionKeys:
    """Split a key2 by direction: 0 sends with keys[0], 1 with keys[1], None uses keys[0]."""
    if len(key) != KEY2_LEN:
        raise ValueError(f"a static key is {KEY2_LEN} bytes, not {len(key)}")
    if direction is None:
        out_index = in_index = 0
    elif direction in (0, 1):
        out_index, in_index = direction, 1 - direction
    else:
        raise ValueError(f"key direction must be 0, 1 or None, not {direction!r}")
    send_cipher, send_hmac = _half(key, out_index)
    recv_cipher, recv_hmac = _half(key, in_index)
    return DirectionKeys(send_cipher, send_hmac, recv_cipher, recv_hmac)
