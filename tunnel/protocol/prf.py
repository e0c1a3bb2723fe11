"""Data-channel key derivation without EKM: OpenVPN's TLS 1.0 PRF and the key2 split.

OpenVPN 2.6 derives the data-channel keys from the key-method-2 randoms with the TLS 1.0/1.1
PRF (RFC 2246, MD5 xor SHA1), not from the TLS session, unless both sides agreed on EKM
(`ssl.c: generate_key_expansion_openvpn_prf(), openvpn_PRF()`,
`crypto_openssl.c: ssl_tls1_PRF()`). We never announce EKM (the stdlib `ssl` module has no
`export_keying_material`), so this is the only derivation we use. Wire doc section 7.1.

Nothing here logs, and nothing here puts key material into a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

__all__ = [
    "IMPLICIT_IV_LEN",
    "KEY2_LEN",
    "MASTER_SECRET_LEN",
    "PRE_MASTER_LEN",
    "RANDOM_LEN",
    "DirectionKey",
    "derive_key2",
    "derive_master_secret",
    "split_key2",
    "tls1_prf",
]

# Sizes from `ssl_common.h: struct key_source` and `crypto.h: struct key, struct key2`.
PRE_MASTER_LEN = 48
RANDOM_LEN = 32
SESSION_ID_LEN = 8
MASTER_SECRET_LEN = 48
KEY2_LEN = 256  # 2 x (64-byte cipher slot + 64-byte hmac slot)
_SLOT_LEN = 64  # MAX_CIPHER_KEY_LENGTH and MAX_HMAC_KEY_LENGTH
# 12-byte AEAD nonce = 4-byte packet-id || 8-byte implicit IV
# (`ssl.c: key_ctx_update_implicit_iv()`: iv_len - sizeof(packet_id) bytes of the hmac slot).
IMPLICIT_IV_LEN = 8

# ASCII, no trailing space, no NUL: the draft's "OpenVPN key expansion " is wrong (wire doc 7.1,
# appendix B); `ssl.c: generate_key_expansion_openvpn_prf()` uses these exact literals.
_MASTER_LABEL = b"OpenVPN master secret"
_EXPANSION_LABEL = b"OpenVPN key expansion"


def _hash_constructor(name: str) -> Callable[[], Any]:
    """CPython's built-in MD5/SHA-1 (`_md5`, `_sha1`), else hashlib's (OpenSSL's).

    The PRF takes ~70 HMACs per handshake on 16-64 byte inputs, where the fixed cost per
    call is everything: `hmac` over a digest name goes through OpenSSL 3.0's EVP_MAC and its
    provider layer (~4 us to copy a keyed HMAC and finish it); `hmac` over the built-in
    constructor keeps two C hash states and copies them (~2 us). Both compute the same
    function; only the call overhead differs."""
    try:
        # `_md5` / `_sha1` are the built-in modules behind hashlib's fallback (no stubs).
        module = importlib.import_module(f"_{name}")
        return cast(Callable[[], Any], getattr(module, name))
    except (ImportError, AttributeError):  # an interpreter built without them
        return cast(Callable[[], Any], getattr(hashlib, name))


_MD5 = _hash_constructor("md5")
_SHA1 = _hash_constructor("sha1")


def _p_hash(new: Callable[[], Any], secret: bytes, seed: bytes, length: int) -> bytes:
    """RFC 2246 section 5 P_hash: A(i) = HMAC(secret, A(i-1)); out = HMAC(secret, A(i)||seed)...

    The HMAC (`hmac` over `new`, a built-in hash: see `_hash_constructor`) is keyed once and
    copied per step."""
    keyed = hmac.new(secret, None, new)
    out = bytearray()
    a = seed
    while len(out) < length:
        h = keyed.copy()  # A(i) = HMAC(secret, A(i-1))
        h.update(a)
        a = h.digest()
        h = keyed.copy()  # HMAC(secret, A(i) || seed)
        h.update(a)
        h.update(seed)
        out += h.digest()
    return bytes(out[:length])


def tls1_prf(secret: bytes, seed: bytes, length: int) -> bytes:
    """The TLS 1.0 PRF: P_MD5(S1, seed) xor P_SHA1(S2, seed), `length` bytes.

    The secret is split into two halves of ceil(len/2) bytes; for an odd length they share
    the middle byte (RFC 2246 5). OpenVPN calls this with the label already prepended to the
    seed, so there is no separate label argument.
    """
    if length < 0:
        raise ValueError(f"PRF output length must be >= 0, not {length}")
    half = (len(secret) + 1) // 2
    s1 = secret[:half]
    s2 = secret[len(secret) - half:]
    md5_part = _p_hash(_MD5, s1, seed, length)
    sha1_part = _p_hash(_SHA1, s2, seed, length)
    # One XOR of two big integers instead of a Python step per byte.
    return (int.from_bytes(md5_part, "big") ^ int.from_bytes(sha1_part, "big")).to_bytes(
        length, "big")


def _check_len(name: str, value: bytes, expected: int) -> None:
    if len(value) != expected:
        raise ValueError(f"{name} must be {expected} bytes, not {len(value)}")


def derive_master_secret(
    *, client_pre_master: bytes, client_random1: bytes, server_random1: bytes
) -> bytes:
    """The 48-byte master secret: PRF(pre_master, "OpenVPN master secret" || c.r1 || s.r1)."""
    _check_len("client pre_master", client_pre_master, PRE_MASTER_LEN)
    _check_len("client random1", client_random1, RANDOM_LEN)
    _check_len("server random1", server_random1, RANDOM_LEN)
    return tls1_prf(
        client_pre_master, _MASTER_LABEL + client_random1 + server_random1, MASTER_SECRET_LEN
    )


def derive_key2(
    *,
    client_pre_master: bytes,
    client_random1: bytes,
    client_random2: bytes,
    server_random1: bytes,
    server_random2: bytes,
    client_sid: bytes,
    server_sid: bytes,
) -> bytes:
    """The 256-byte key2 block of one TLS session (wire doc 7.1).

    The second PRF's secret is the master secret and its seed ends with both control-channel
    session ids, the client's first - both points the protocol draft gets wrong.
    """
    _check_len("client random2", client_random2, RANDOM_LEN)
    _check_len("server random2", server_random2, RANDOM_LEN)
    _check_len("client session id", client_sid, SESSION_ID_LEN)
    _check_len("server session id", server_sid, SESSION_ID_LEN)
    master = derive_master_secret(
        client_pre_master=client_pre_master,
        client_random1=client_random1,
        server_random1=server_random1,
    )
    seed = _EXPANSION_LABEL + client_random2 + server_random2 + client_sid + server_sid
    return tls1_prf(master, seed, KEY2_LEN)


@dataclass(frozen=True, slots=True, repr=False)
class DirectionKey:
    """The AEAD key material of one direction: the cipher key and the 8-byte implicit IV."""

    cipher_key: bytes
    implicit_iv: bytes

    def __post_init__(self) -> None:
        if not self.cipher_key:
            raise ValueError("cipher key must not be empty")
        _check_len("implicit IV", self.implicit_iv, IMPLICIT_IV_LEN)

    def __repr__(self) -> str:
        # Key material never reaches a log line through a repr.
        return f"DirectionKey(cipher_key=<{len(self.cipher_key)} bytes>, implicit_iv=<hidden>)"


def split_key2(key2: bytes, *, key_len: int, is_server: bool) -> tuple[DirectionKey, DirectionKey]:
    """Cut key2 into ``(encrypt, decrypt)`` keys for our role.

    keys[0] (bytes 0..127) protects client->server traffic, keys[1] (128..255) server->client:
    the client uses KEY_DIRECTION_NORMAL and the server INVERSE (`ssl.c: init_key_contexts()`,
    `crypto.c: key_direction_state_init()`). Within each key the cipher key is the first
    `key_len` bytes of the 64-byte cipher slot and the implicit IV the first 8 bytes of the
    64-byte hmac slot, which AEAD ciphers do not otherwise use.
    """
    _check_len("key2", key2, KEY2_LEN)
    if not 1 <= key_len <= _SLOT_LEN:
        raise ValueError(f"cipher key length must be 1..{_SLOT_LEN}, not {key_len}")

    def key_at(base: int) -> DirectionKey:
        hmac_slot = base + _SLOT_LEN
        return DirectionKey(
            cipher_key=bytes(key2[base:base + key_len]),
            implicit_iv=bytes(key2[hmac_slot:hmac_slot + IMPLICIT_IV_LEN]),
        )

    client_to_server = key_at(0)
    server_to_client = key_at(2 * _SLOT_LEN)
    if is_server:
        return server_to_client, client_to_server
    return client_to_server, server_to_client

