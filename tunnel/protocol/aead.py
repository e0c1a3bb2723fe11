"""One direction of one data-channel key's AEAD, and which implementation provides it.

`new_aead(cipher, key, implicit_iv, encrypt)` returns an object with four methods, the only
AEAD calls the data channel makes (`datachannel.DataKey`):

* `seal(datagram, aad_from, tag_at, ct_at, end, pid)`: the datagram as OpenVPN lays it out,
  AAD `[aad_from, tag_at)`, tag `[tag_at, ct_at)` (16 bytes), text `[ct_at, end)`; encrypts
  the text in place and writes the tag into its slot. nonce = pid (4, BE) || implicit IV (8).
* `open(...)`, same arguments: decrypts in place and returns False when the tag does not
  verify (then the text is unspecified, as after `cryptography`'s `decrypt_into`).
* `seal_rows(first_pid, plains, outs, aads)` / `open_rows(pids, cts, outs, aads)`: the row
  batches (rows.py), `encrypt_into` / `decrypt_into` per row; open_rows returns a bool per row.

Two implementations with the same bytes and the same checks (tests/protocol/test_aead.py runs
both):

* **libcrypto** (`tunnel._aead`, tunnel/_aead.c): one persistent `EVP_CIPHER_CTX` per
  direction, so a packet pays only its nonce, not a key schedule and a context. The default
  where it was built (`pip install` builds it when a compiler and libssl-dev are there).
* **cryptography** (`CryptographyAead` below): `AESGCM` / `ChaCha20Poly1305`, which set up a
  context per call. Used where the extension did not build, or with `TUNNEL_AEAD=cryptography`
  (A/B benchmarks). It needs 16 bytes of room behind `end` (the frame's aead-assembly
  tailroom), where `encrypt_into` puts the tag before it is moved to its slot.

`BACKEND` names the one in use; `tunnel --version` prints it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

__all__ = ["BACKEND", "BACKENDS", "BACKEND_ERROR", "NATIVE_AEAD", "AeadDirection",
           "CryptographyAead", "new_aead"]

TAG_SIZE: Final = 16
NONCE_SIZE: Final = 12
_PID: Final = struct.Struct(">I")
IMPLICIT_IV_SIZE: Final = NONCE_SIZE - _PID.size

_CLASSES: Final[dict[str, tuple[type[AESGCM] | type[ChaCha20Poly1305], int]]] = {
    "AES-256-GCM": (AESGCM, 32),
    "AES-128-GCM": (AESGCM, 16),
    "CHACHA20-POLY1305": (ChaCha20Poly1305, 32),
}


class AeadDirection(Protocol):
    """What `new_aead` returns (see the module docstring)."""

    def seal(self, datagram: memoryview, aad_from: int, tag_at: int, ct_at: int, end: int,
             pid: int, /) -> None: ...

    def open(self, datagram: memoryview, aad_from: int, tag_at: int, ct_at: int, end: int,
             pid: int, /) -> bool: ...

    def seal_rows(self, first_pid: int, plains: list[memoryview], outs: list[memoryview],
                  aads: list[memoryview], /) -> None: ...

    def open_rows(self, pids: list[int], cts: list[memoryview], outs: list[memoryview],
                  aads: list[memoryview], /) -> list[bool]: ...


def _check(datagram: memoryview, aad_from: int, tag_at: int, ct_at: int, end: int,
           pid: int) -> None:
    """The libcrypto extension's own checks, so both refuse the same calls before any change
    (plus the 16 bytes behind `end` this implementation needs)."""
    if not (0 <= aad_from <= tag_at and ct_at - tag_at == TAG_SIZE and ct_at <= end
            and end + TAG_SIZE <= len(datagram)):
        raise ValueError("AEAD offsets outside the datagram")
    if not 0 <= pid <= 0xFFFFFFFF:
        raise ValueError("packet-id does not fit in 32 bits")


class CryptographyAead:
    """The `cryptography` implementation: a context per call, the tag through the tailroom."""

    __slots__ = ("_decrypt_into", "_encrypt", "_encrypt_into", "_nonce")

    def __init__(self, cipher: str, key: bytes, implicit_iv: bytes, encrypt: bool) -> None:
        kind = _CLASSES.get(cipher)
        if kind is None or len(key) != kind[1]:
            # Lengths only: never the key material.
            raise ValueError(f"unsupported AEAD {cipher} with a {len(key)}-byte key")
        if len(implicit_iv) != IMPLICIT_IV_SIZE:
            raise ValueError(
                f"implicit IV is {len(implicit_iv)} bytes, needs {IMPLICIT_IV_SIZE}")
        aead = kind[0](bytes(key))
        self._encrypt_into = aead.encrypt_into
        self._decrypt_into = aead.decrypt_into
        self._encrypt = encrypt
        # Only the packet-id part changes per packet: one nonce, overwritten in place.
        self._nonce = bytearray(_PID.size) + bytes(implicit_iv)

    def _direction(self, encrypt: bool) -> None:
        if self._encrypt != encrypt:
            raise TypeError("not a sealing context" if encrypt else "not an opening context")

    def seal(self, datagram: memoryview, aad_from: int, tag_at: int, ct_at: int, end: int,
             pid: int, /) -> None:
        self._direction(True)
        _check(datagram, aad_from, tag_at, ct_at, end, pid)
        nonce = self._nonce
        _PID.pack_into(nonce, 0, pid)
        # ciphertext || tag over [ct_at, end + 16), then the tag to its slot in front.
        self._encrypt_into(nonce, datagram[ct_at:end], datagram[aad_from:tag_at],
                           datagram[ct_at:end + TAG_SIZE])
        datagram[tag_at:ct_at] = datagram[end:end + TAG_SIZE]

    def open(self, datagram: memoryview, aad_from: int, tag_at: int, ct_at: int, end: int,
             pid: int, /) -> bool:
        self._direction(False)
        _check(datagram, aad_from, tag_at, ct_at, end, pid)
        nonce = self._nonce
        _PID.pack_into(nonce, 0, pid)
        datagram[end:end + TAG_SIZE] = datagram[tag_at:ct_at]  # ciphertext || tag
        try:
            self._decrypt_into(nonce, datagram[ct_at:end + TAG_SIZE],
                               datagram[aad_from:tag_at], datagram[ct_at:end])
        except InvalidTag:
            return False
        return True

    def seal_rows(self, first_pid: int, plains: list[memoryview], outs: list[memoryview],
                  aads: list[memoryview], /) -> None:
        self._direction(True)
        if not len(plains) == len(outs) == len(aads):
            raise ValueError("rows of different lengths")
        last = first_pid + len(plains) - 1
        if not 0 <= first_pid <= 0xFFFFFFFF or (plains and last > 0xFFFFFFFF):
            raise ValueError("packet-ids do not fit in 32 bits")
        nonce = self._nonce
        pack = _PID.pack_into
        encrypt_into = self._encrypt_into
        pid = first_pid
        for plain, out, aad in zip(plains, outs, aads, strict=True):
            pack(nonce, 0, pid)
            encrypt_into(nonce, plain, aad, out)
            pid += 1

    def open_rows(self, pids: list[int], cts: list[memoryview], outs: list[memoryview],
                  aads: list[memoryview], /) -> list[bool]:
        self._direction(False)
        if not len(pids) == len(cts) == len(outs) == len(aads):
            raise ValueError("rows of different lengths")
        nonce = self._nonce
        pack = _PID.pack_into
        decrypt_into = self._decrypt_into
        oks: list[bool] = []
        for pid, ct, out, aad in zip(pids, cts, outs, aads, strict=True):
            pack(nonce, 0, pid)
            try:
                decrypt_into(nonce, ct, aad, out)
            except InvalidTag:
                oks.append(False)
                continue
            oks.append(True)
        return oks


AeadFactory = Callable[[str, bytes, bytes, bool], AeadDirection]
"""(cipher, key, implicit_iv, encrypt) -> one direction: either class."""


def _native() -> AeadFactory | None:
    try:
        from tunnel._aead import Aead
    except ImportError:  # not built here (no compiler or no libssl-dev at install)
        return None
    native: AeadFactory = Aead
    return native


_NATIVE: Final = _native()


def _native_class() -> type | None:
    try:
        from tunnel._aead import Aead
    except ImportError:
        return None
    return Aead


NATIVE_AEAD: Final = _native_class()
"""The libcrypto class (`tunnel._aead.Aead`), None where it is not built: the lone-packet
lane (tunnel/io/lane.py) works only on its contexts."""
BACKENDS: Final[dict[str, AeadFactory]] = {
    **({"libcrypto": _NATIVE} if _NATIVE is not None else {}),
    "cryptography": CryptographyAead,
}
"""The implementations this installation has, by name."""


def _choose() -> tuple[str, str | None]:
    """(the backend, None), or (the default, why TUNNEL_AEAD cannot be honoured)."""
    default = "libcrypto" if "libcrypto" in BACKENDS else "cryptography"
    wanted = os.environ.get("TUNNEL_AEAD", "")
    if not wanted:
        return default, None
    if wanted not in ("libcrypto", "cryptography"):
        return default, f"TUNNEL_AEAD={wanted!r}: expected libcrypto or cryptography"
    if wanted not in BACKENDS:
        return default, ("TUNNEL_AEAD=libcrypto, but tunnel._aead is not built here "
                         "(install gcc, python3-dev and libssl-dev, then reinstall)")
    return wanted, None


BACKEND, BACKEND_ERROR = _choose()
"""The implementation `new_aead` uses ("libcrypto" or "cryptography"), and why the one
TUNNEL_AEAD asks for cannot be used (None when it can): the CLI refuses to start with that
message, and `new_aead` raises it, so nothing runs on an AEAD other than the one asked for."""
_CLASS: Final = BACKENDS[BACKEND]


def new_aead(cipher: str, key: bytes, implicit_iv: bytes, encrypt: bool,
             backend: str | None = None) -> AeadDirection:
    """One direction of a key: sealing (`encrypt`) or opening. `backend` picks one by name
    (tests); by default `BACKEND`. ValueError for an unsupported cipher or a bad length."""
    if backend is None and BACKEND_ERROR is not None:
        raise ValueError(BACKEND_ERROR)
    chosen = _CLASS if backend is None else BACKENDS[backend]
    return chosen(cipher, key, implicit_iv, encrypt)
