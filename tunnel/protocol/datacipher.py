"""The data-channel cipher seam: which implementation serves a negotiated cipher name.

Three kinds today: AEAD (`datachannel.DataKey`: AES-GCM, ChaCha20-Poly1305), CBC + HMAC
(`cbc.CbcHmacKey`) and CFB/OFB + HMAC (`cfb.StreamHmacKey`, old configs). Every kind is a
`datakey.DataCipherKey` (re-exported here) and
registers its geometry with `core.FrameBuilder` itself, so the session, the frame and the
benchmarks never name a concrete class. Adding a kind: write the key class (seal/open in place,
the counters), its `register_*` function, and a `_Kind` entry here; docs/INTERNALS.md says more.
"""

from __future__ import annotations

from collections.abc import Iterable

from core import FrameBuilder
from tunnel.protocol.cbc import (
    CBC_CIPHERS,
    HMAC_DIGESTS,
    CbcHmacKey,
    register_cbc,
    split_key2_cbc,
)
from tunnel.protocol.cfb import STREAM_CIPHERS, StreamHmacKey, register_stream_cipher
from tunnel.protocol.datachannel import (
    SUPPORTED_CIPHERS,
    DataKey,
    register_data_channel,
    register_shared_words,
)
from tunnel.protocol.datakey import DataCipherKey
from tunnel.protocol.prf import split_key2
from tunnel.protocol.replay import ReplayWindow

__all__ = [
    "AUTH_DIGESTS",
    "DATA_CIPHERS",
    "DEFAULT_AUTH",
    "DEFAULT_DATA_CIPHERS",
    "DataCipherKey",
    "data_cipher_names",
    "data_overhead",
    "is_aead",
    "make_data_key",
    "register_data_cipher",
    "register_data_ciphers",
]

DEFAULT_AUTH = "SHA1"
"""OpenVPN's default `auth` digest (options.c: init_options)."""

# The one list of data-channel cipher names, read off the kinds' own tables (config, the
# session settings and the command line take theirs from here).
DATA_CIPHERS: tuple[str, ...] = (*SUPPORTED_CIPHERS, *CBC_CIPHERS, *STREAM_CIPHERS)
"""Every cipher name some kind implements: AEAD in OpenVPN 2.6's preference order, then CBC,
then CFB/OFB (cfb.py)."""
DEFAULT_DATA_CIPHERS: tuple[str, ...] = tuple(SUPPORTED_CIPHERS)
"""2.6's default `data-ciphers` (AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305): AEAD only."""
AUTH_DIGESTS: tuple[str, ...] = tuple(HMAC_DIGESTS)
"""`auth` digests a CBC data channel can use (OpenSSL names, upper-case as OpenVPN prints)."""


def is_aead(cipher: str) -> bool:
    return cipher.upper() in SUPPORTED_CIPHERS


def data_cipher_names() -> tuple[str, ...]:
    """Every cipher name some kind implements (AEAD first)."""
    return DATA_CIPHERS


def data_overhead(cipher: str, auth: str = DEFAULT_AUTH) -> int:
    """The most bytes a P_DATA_V2 datagram of this cipher adds to its payload: what its
    registrations add (the frame's `overhead`)."""
    builder = FrameBuilder()
    register_data_cipher(builder, cipher, auth)
    return builder.finalize().overhead


def register_data_cipher(builder: FrameBuilder, cipher: str, auth: str = DEFAULT_AUTH) -> None:
    """Register exactly what one negotiated cipher adds: the geometry of a session's data
    channel once the cipher is chosen (`register_data_ciphers` leaves room for any of several)."""
    if is_aead(cipher):
        register_data_channel(builder)
        return
    register_shared_words(builder)
    if cipher.upper() in STREAM_CIPHERS:
        register_stream_cipher(builder, auth.upper())
        return
    register_cbc(builder, auth.upper())


def register_data_ciphers(
    builder: FrameBuilder, ciphers: Iterable[str], auth: str = DEFAULT_AUTH
) -> None:
    """Register the geometry of every kind any of `ciphers` needs (the negotiation comes later).

    The words every kind shares (op/peer-id, packet-id) always; the AEAD tag and assembly room
    only when an AEAD cipher may be used, CBC's only when a CBC cipher may (a CBC-only config,
    `data-ciphers AES-256-CBC`, never needs a tag's room: negotiation picks from this list).
    """
    ciphers = list(ciphers)
    if not ciphers or any(is_aead(c) for c in ciphers):
        register_data_channel(builder)  # the shared words included
    else:
        register_shared_words(builder)
    if any(c.upper() in CBC_CIPHERS for c in ciphers):
        register_cbc(builder, auth.upper())
    if any(c.upper() in STREAM_CIPHERS for c in ciphers):
        register_stream_cipher(builder, auth.upper())


def make_data_key(
    *,
    cipher: str,
    auth: str,
    key2: bytes,
    is_server: bool,
    key_id: int,
    replay: ReplayWindow,
    wall_time: int = 0,
) -> DataCipherKey:
    """The key object for a negotiated cipher; ValueError for a cipher no kind implements.
    `wall_time`: Unix seconds, the time field of a CFB/OFB key's long-form packet-ids."""
    name = cipher.upper()
    if name in SUPPORTED_CIPHERS:
        encrypt, decrypt = split_key2(
            key2, key_len=SUPPORTED_CIPHERS[name][1], is_server=is_server
        )
        return DataKey(key_id=key_id, cipher=name, encrypt=encrypt, decrypt=decrypt, replay=replay)
    if name in CBC_CIPHERS or name in STREAM_CIPHERS:
        digest = auth.upper()
        if digest not in HMAC_DIGESTS:
            raise ValueError(
                f"unsupported auth digest {auth!r} for {name}; supported: {', '.join(HMAC_DIGESTS)}"
            )
        key_len = CBC_CIPHERS[name] if name in CBC_CIPHERS else STREAM_CIPHERS[name][0]
        cbc_enc, cbc_dec = split_key2_cbc(
            key2, key_len=key_len, hmac_len=HMAC_DIGESTS[digest], is_server=is_server
        )
        if name in STREAM_CIPHERS:
            return StreamHmacKey(key_id=key_id, cipher=name, auth=digest, encrypt=cbc_enc,
                                 decrypt=cbc_dec, replay=replay, wall_time=wall_time)
        return CbcHmacKey(
            key_id=key_id, cipher=name, auth=digest, encrypt=cbc_enc, decrypt=cbc_dec, replay=replay
        )
    raise ValueError(
        f"unsupported data-channel cipher {cipher!r}; supported: {', '.join(data_cipher_names())}"
    )
