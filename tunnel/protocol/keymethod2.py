"""Key method 2: the first plaintext each side writes into every TLS session (wire doc 6).

Layout (`ssl.c: key_method_2_write()` / `key_method_2_read()`):

    u32 0 | u8 key method (2) | pre_master[48] (client only) | random1[32] | random2[32]
    | options | username | password | peer-info

Each string is a u16 length that counts a trailing NUL, then the bytes; an absent string is
the length 0 alone (`write_empty_string()`). The whole message goes out in one TLS record of at
most 2048 bytes, because the stock reader takes a single `SSL_read()` into a
`TLS_CHANNEL_BUF_SIZE` buffer and discards whatever is left after peer-info (`buf_clear`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from core import BoundsError, Buffer
from tunnel.protocol.errors import ProtocolError

__all__ = [
    "KEY_METHOD_2",
    "MAX_KM2_LEN",
    "OPTIONS_MAX_LEN",
    "PRE_MASTER_LEN",
    "RANDOM_LEN",
    "USER_PASS_LEN",
    "KeyMethod2",
    "decode_key_method2",
    "encode_key_method2",
    "new_key_method2",
]

KEY_METHOD_2 = 2
KEY_METHOD_MASK = 0x0F  # ssl.h: the high bits are flags (none defined)
PRE_MASTER_LEN = 48  # ssl_common.h: struct key_source
RANDOM_LEN = 32
MAX_KM2_LEN = 2048  # common.h: TLS_CHANNEL_BUF_SIZE, one SSL_read on the stock side
OPTIONS_MAX_LEN = 512  # ssl.h: TLS_OPTIONS_LEN, NUL included
# misc.h: 4096 in builds with PKCS#11 (Debian's), 128 otherwise; NUL included. The stock reader
# turns longer values into AUTH_FAILED; we refuse the message outright.
USER_PASS_LEN = 4096



@dataclass(slots=True)
class KeyMethod2:
    """One side's key-method-2 message. ``pre_master`` is present only in the client's."""

    random1: bytes
    random2: bytes
    options: str
    pre_master: bytes | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    peer_info: str | None = None


def new_key_method2(
    *,
    from_client: bool,
    options: str,
    peer_info: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> KeyMethod2:
    """Our message for a new TLS session, with fresh randoms (`key_source2_randomize_write()`)."""
    return KeyMethod2(
        random1=os.urandom(RANDOM_LEN),
        random2=os.urandom(RANDOM_LEN),
        options=options,
        pre_master=os.urandom(PRE_MASTER_LEN) if from_client else None,
        username=username,
        password=password,
        peer_info=peer_info,
    )


# --- writer ---------------------------------------------------------------------------------


def _string_bytes(name: str, value: str, *, secret: bool = False) -> bytes:
    # username/password may carry bytes that are not UTF-8 (the decoder keeps them as surrogate
    # escapes), so they go back out byte for byte.
    raw = value.encode("utf-8", "surrogateescape" if secret else "strict")
    if b"\0" in raw:
        raise ValueError(f"{name} must not contain a NUL")
    return raw


def _write_string(out: Buffer, raw: bytes | None) -> None:
    """`write_string()` (length counts the NUL) or, for None/empty, `write_empty_string()`."""
    if not raw:
        out.append_u16(0)
        return
    out.append_u16(len(raw) + 1)
    out.append(raw)
    out.append_u8(0)


def encode_key_method2(msg: KeyMethod2, *, from_client: bool) -> bytes:
    """Serialise ``msg`` as the client's (with pre_master) or the server's message.

    Written with appends into a `Buffer` of the peer's read size (stock: `buf_write` into the
    plaintext buffer), so the 2048-byte bound is the Buffer's own. The options string is always
    written with its NUL, like stock (`write_string()` on `local_options`); an absent or empty
    username, password or peer-info becomes ``00 00``. Raises ValueError on wrong field sizes,
    a NUL inside a string, an options string over TLS_OPTIONS_LEN, or a message that would not
    fit the peer's 2048-byte read.
    """
    if len(msg.random1) != RANDOM_LEN or len(msg.random2) != RANDOM_LEN:
        raise ValueError(f"random1 and random2 must be {RANDOM_LEN} bytes each")
    if from_client and (msg.pre_master is None or len(msg.pre_master) != PRE_MASTER_LEN):
        raise ValueError(f"the client's message needs a {PRE_MASTER_LEN}-byte pre_master")
    options = _string_bytes("options", msg.options)
    if len(options) + 1 > OPTIONS_MAX_LEN:
        raise ValueError(f"options string is {len(options) + 1} bytes, limit {OPTIONS_MAX_LEN}")
    strings: list[bytes | None] = []
    for name, value, secret in (
        ("username", msg.username, True),
        ("password", msg.password, True),
    ):
        raw = None if value is None else _string_bytes(name, value, secret=secret)
        if raw is not None and len(raw) + 1 > USER_PASS_LEN:
            raise ValueError(f"{name} is longer than USER_PASS_LEN ({USER_PASS_LEN})")
        strings.append(raw)
    strings.append(None if msg.peer_info is None else _string_bytes("peer-info", msg.peer_info))

    out = Buffer(MAX_KM2_LEN)
    try:
        out.append_u32(0)
        out.append_u8(KEY_METHOD_2)
        if msg.pre_master is not None and from_client:
            out.append(msg.pre_master)
        out.append(msg.random1)
        out.append(msg.random2)
        _write_string(out, options)
        for raw in strings:
            _write_string(out, raw)
    except BoundsError:
        raise ValueError(
            f"key-method-2 message does not fit one {MAX_KM2_LEN}-byte read") from None
    return bytes(out.data)


# --- reader ---------------------------------------------------------------------------------


def _take(buf: Buffer, n: int, what: str) -> bytes:
    try:
        return buf.read(n).tobytes()
    except BoundsError:
        raise ProtocolError(f"key-method-2 message truncated in {what}") from None


def _read_string(buf: Buffer, what: str, limit: int) -> bytes | None:
    """`read_string()`: None for length 0, else the bytes before the terminating NUL."""
    try:
        length = buf.read_u16()
    except BoundsError:
        raise ProtocolError(f"key-method-2 message truncated in {what}") from None
    if length == 0:
        return None
    if length > limit:
        raise ProtocolError(f"key-method-2 {what} is {length} bytes, limit {limit}")
    raw = _take(buf, length, what)
    # Stock forces the last byte to NUL (`str[len-1] = '\0'`) and then uses the buffer as a
    # C string, so an embedded NUL ends it early. Do the same rather than be stricter.
    return raw[:-1].split(b"\0", 1)[0]


def decode_key_method2(data: bytes, *, from_client: bool) -> KeyMethod2:
    """Parse a peer's message; ``from_client`` says whether the peer is the client.

    Read with `Buffer` reads (stock: `buf_read` on the plaintext buffer); a read past the end
    is a ProtocolError naming the field. Accepts both empty-string forms (``00 00`` -> None,
    ``00 01 00`` -> ""), and messages that end after the options string (older peers) with the
    missing fields None. Bytes after peer-info are ignored, as the stock reader's `buf_clear`
    does. Raises only ProtocolError.
    """
    buf = Buffer.over(bytearray(data))
    buf.inc_len(buf.capacity)
    _take(buf, 4, "header")  # the reader skips the u32 unchecked
    method = _take(buf, 1, "key method")[0]
    if method & KEY_METHOD_MASK != KEY_METHOD_2:
        raise ProtocolError(f"unsupported key method {method & KEY_METHOD_MASK}")
    pre_master = _take(buf, PRE_MASTER_LEN, "pre_master") if from_client else None
    random1 = _take(buf, RANDOM_LEN, "random1")
    random2 = _take(buf, RANDOM_LEN, "random2")
    options = _read_string(buf, "options string", OPTIONS_MAX_LEN)

    fields: list[bytes | None] = []
    for what, limit in (
        ("username", USER_PASS_LEN),
        ("password", USER_PASS_LEN),
        ("peer-info", MAX_KM2_LEN),
    ):
        # Missing trailing fields (a peer that stops after the options) read as absent.
        fields.append(_read_string(buf, what, limit) if len(buf) else None)
    username, password, peer_info = fields

    return KeyMethod2(
        random1=random1,
        random2=random2,
        options=_text(options) or "",
        pre_master=pre_master,
        username=_secret_text(username),
        password=_secret_text(password),
        peer_info=_text(peer_info),
    )


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def _secret_text(raw: bytes | None) -> str | None:
    # surrogateescape keeps the mapping injective: two different byte strings never decode to
    # the same str, which matters when the result is compared against a stored password.
    return None if raw is None else raw.decode("utf-8", "surrogateescape")
