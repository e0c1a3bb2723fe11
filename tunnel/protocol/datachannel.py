"""The data channel: AEAD sealing and opening of P_DATA_V1/V2 datagrams, in place.

Wire layout (OPENVPN-WIRE.md 8.1, 8.2; `crypto.c: openvpn_encrypt_aead()/openvpn_decrypt_aead()`):

    P_DATA_V2:  op|kid (1) | peer-id (3) | packet-id (4) | tag (16) | ciphertext
    P_DATA_V1:  op|kid (1) |               packet-id (4) | tag (16) | ciphertext

    AAD   = op|kid + peer-id + packet-id (V2), packet-id only (V1)
    nonce = packet-id (4, BE) || implicit IV (8)

Memory: a packet is sealed where it lies in its pooled buffer. A TUN read lands at
`frame.headroom`, so the header, packet-id and tag fit in front of it; the AEAD (aead.py: one
persistent libcrypto context per direction, or `cryptography`) encrypts the payload in place
and puts the tag into its slot in front of the ciphertext, and opening decrypts in place
against that slot. `cryptography`'s `encrypt_into`/`decrypt_into` want the tag behind the
ciphertext, so the frame keeps 16 bytes of tailroom for it (aead-assembly) whichever runs. The
payload is never copied and no `bytes` object is created per packet.

Every size below comes from the registrations made in `register_data_channel` (or from the
precompiled header structs), so the frame and this code cannot disagree.
"""

from __future__ import annotations

import struct
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from core import BoundsError, Buffer, FrameBuilder
from tunnel.protocol.aead import new_aead
from tunnel.protocol.constants import NO_PEER_ID
from tunnel.protocol.datakey import (
    PACKET_ID_MAX,
    PEER_ID_BITS,
    DataCipherKey,
    PacketIdExhausted,
)
from tunnel.protocol.prf import DirectionKey
from tunnel.protocol.replay import ReplayWindow
from tunnel.protocol.rows import OpenRows, SealRows

__all__ = [
    "AEAD_ASSEMBLY_SIZE",
    "AEAD_TAG_SIZE",
    "DATA_V1_OVERHEAD",
    "DATA_V2_OVERHEAD",
    "OPCODE_PEER_ID_SIZE",
    "PACKET_ID_SIZE",
    "SUPPORTED_CIPHERS",
    "DataKey",
    "cipher_key_length",
    "register_data_channel",
    "register_shared_words",
]

# -- geometry: what the data channel registers in the frame ---------------------------------

OPCODE_PEER_ID_SIZE: Final = 4
"""P_DATA_V2's first word: op|key_id (1 byte) and the peer-id (u24). V1 uses only its op byte."""
PACKET_ID_SIZE: Final = 4
"""The short-form packet-id: a u32 counter, no timestamp (AEAD ciphers)."""
AEAD_TAG_SIZE: Final = 16
"""GCM / Poly1305 tag; it travels in front of the ciphertext."""
AEAD_ASSEMBLY_SIZE: Final = AEAD_TAG_SIZE
"""Tailroom where `cryptography`'s `encrypt_into` writes the tag (behind the ciphertext) before it
is moved to the front, and where its `open` puts the tag back for `decrypt_into` (aead.py); the
libcrypto AEAD does not need it, the seal/open contracts keep it for both."""

SHARED_REGISTRATIONS: Final = (
    ("opcode+peer-id", OPCODE_PEER_ID_SIZE, 0),
    ("packet-id", PACKET_ID_SIZE, 0),
)
"""The words every data-channel kind puts in front of its payload (AEAD and CBC alike)."""
REGISTRATIONS: Final = (
    *SHARED_REGISTRATIONS,
    ("aead-tag", AEAD_TAG_SIZE, 0),
    ("aead-assembly", 0, AEAD_ASSEMBLY_SIZE),
)


def register_data_channel(builder: FrameBuilder) -> None:
    """Register, by name, the headroom and tailroom the data channel needs in every buffer."""
    for name, headroom, tailroom in REGISTRATIONS:
        builder.reserve(name, headroom=headroom, tailroom=tailroom)


def register_shared_words(builder: FrameBuilder) -> None:
    """Only the op/peer-id and packet-id words (a frame for a CBC cipher alone)."""
    for name, headroom, tailroom in SHARED_REGISTRATIONS:
        builder.reserve(name, headroom=headroom, tailroom=tailroom)


# Precompiled headers (network byte order). V2's first word is (op|kid) << 24 | peer_id.
_V2_HEADER: Final = struct.Struct(">II")  # op|kid+peer-id, packet-id
_V1_HEADER: Final = struct.Struct(">BI")  # op|kid, packet-id
_PACKET_ID: Final = struct.Struct(">I")
assert _V2_HEADER.size == OPCODE_PEER_ID_SIZE + PACKET_ID_SIZE
assert _PACKET_ID.size == PACKET_ID_SIZE
_V1_OPCODE_SIZE: Final = _V1_HEADER.size - PACKET_ID_SIZE
assert (OPCODE_PEER_ID_SIZE - _V1_OPCODE_SIZE) * 8 == PEER_ID_BITS

DATA_V2_OVERHEAD: Final = _V2_HEADER.size + AEAD_TAG_SIZE
"""Bytes a P_DATA_V2 datagram adds to its payload (24)."""
DATA_V1_OVERHEAD: Final = _V1_HEADER.size + AEAD_TAG_SIZE
"""Bytes a P_DATA_V1 datagram adds to its payload (21)."""

# -- ciphers and packet ids -----------------------------------------------------------------

AeadCipher = type[AESGCM] | type[ChaCha20Poly1305]

SUPPORTED_CIPHERS: Final[dict[str, tuple[AeadCipher, int]]] = {
    "AES-256-GCM": (AESGCM, 32),
    "AES-128-GCM": (AESGCM, 16),
    "CHACHA20-POLY1305": (ChaCha20Poly1305, 32),
}
"""OpenVPN cipher name -> (AEAD class, key length in bytes). All use a 12-byte nonce."""

AEAD_NONCE_SIZE: Final = 12
IMPLICIT_IV_SIZE: Final = AEAD_NONCE_SIZE - PACKET_ID_SIZE
"""The nonce's fixed part, from the start of the key2 "hmac" slot (`key_ctx_update_implicit_iv`)."""


def cipher_key_length(name: str) -> int:
    """The key length of an OpenVPN AEAD cipher name; ValueError if we do not support it."""
    try:
        return SUPPORTED_CIPHERS[name.upper()][1]
    except KeyError:
        raise ValueError(
            f"unsupported data-channel cipher {name!r}; supported: {', '.join(SUPPORTED_CIPHERS)}"
        ) from None


# -- one key_id's keys ----------------------------------------------------------------------


class DataKey(DataCipherKey):
    """One key_id's AEAD state for both directions: one AEAD context each (the packet-id,
    counters and replay window are `DataCipherKey`'s)."""

    __slots__ = ("_open", "_open_rows", "_seal", "_seal_rows", "opener", "sealer")

    def __init__(
        self,
        *,
        key_id: int,
        cipher: str,
        encrypt: DirectionKey,
        decrypt: DirectionKey,
        replay: ReplayWindow,
    ) -> None:
        name = cipher.upper()
        super().__init__(key_id=key_id, cipher=name, replay=replay)
        key_len = cipher_key_length(name)  # ValueError for a cipher we do not support
        for label, direction in (("encrypt", encrypt), ("decrypt", decrypt)):
            # Lengths only in the messages: never the key material.
            if len(direction.cipher_key) != key_len:
                raise ValueError(
                    f"{label} key is {len(direction.cipher_key)} bytes, {name} needs {key_len}")
            if len(direction.implicit_iv) != IMPLICIT_IV_SIZE:
                raise ValueError(
                    f"{label} implicit IV is {len(direction.implicit_iv)} bytes, "
                    f"needs {IMPLICIT_IV_SIZE}")
        # One persistent context per direction (aead.py: libcrypto, or cryptography where the
        # extension is not built); bound methods, looked up once: the hot path calls them.
        sealer = new_aead(name, bytes(encrypt.cipher_key), bytes(encrypt.implicit_iv), True)
        opener = new_aead(name, bytes(decrypt.cipher_key), bytes(decrypt.implicit_iv), False)
        # The contexts themselves too: the lone-packet lane (tunnel/io/lane.py) seals and
        # opens on them where they are libcrypto's.
        self.sealer = sealer
        self.opener = opener
        self._seal = sealer.seal
        self._seal_rows = sealer.seal_rows
        self._open = opener.open
        self._open_rows = opener.open_rows

    def seal(self, buf: Buffer, peer_id: int | None) -> None:
        """Turn the plaintext in `buf` into a whole datagram, in place.

        P_DATA_V2 carrying `peer_id` when it is not None, else P_DATA_V1. `buf` needs
        DATA_V2_OVERHEAD bytes of headroom and AEAD_ASSEMBLY_SIZE of tailroom (a buffer from a
        pool whose frame went through `register_data_channel` has both). A `BoundsError` for
        lack of room, a `ValueError` for a bad peer-id, or `PacketIdExhausted` leave `buf` and
        the packet-id counter unchanged.
        """
        pid = self._send_pid + 1
        if pid > PACKET_ID_MAX:
            raise PacketIdExhausted("packet ID roll over: renegotiate the data channel key")
        size = len(buf)
        if peer_id is None:
            ct_at = DATA_V1_OVERHEAD
            buf.reserve_head(ct_at)  # raises before any change when the headroom is short
        else:
            if not 0 <= peer_id <= NO_PEER_ID:
                raise ValueError(f"peer-id {peer_id} does not fit in 24 bits")
            ct_at = DATA_V2_OVERHEAD
            buf.reserve_head(ct_at)
        try:
            buf.inc_len(AEAD_ASSEMBLY_SIZE)  # room for encrypt_into's tag behind the payload
        except BoundsError:
            buf.advance(ct_at)  # a failed seal changes nothing
            raise
        # One view of the whole datagram-to-be; every other view is a short-lived slice of it.
        datagram = buf.data
        tag_at = ct_at - AEAD_TAG_SIZE
        if peer_id is None:
            _V1_HEADER.pack_into(datagram, 0, self._v1_op, pid)
            aad_from = _V1_OPCODE_SIZE
        else:
            _V2_HEADER.pack_into(datagram, 0, self._v2_word | peer_id, pid)
            aad_from = 0
        end = ct_at + size
        # The payload encrypted in place, the tag into its slot in front of the ciphertext.
        self._seal(datagram, aad_from, tag_at, ct_at, end, pid)
        buf.truncate(end)
        self._send_pid = pid
        self.sealed += 1

    seals_rows = True

    def seal_rows(self, rows: SealRows, peer_id: int | None) -> None:
        """`seal` for `rows.count` datagrams at once: the same packet-ids in the same order
        (one counter, `PacketIdExhausted` before any is used), the same bytes per datagram,
        in one AEAD call for all rows and the header work done once for all rows.
        The packet-ids are taken before the first encryption, so an exception part-way never
        lets a nonce be used twice. `ValueError` (bad peer-id) and `PacketIdExhausted` leave
        the rows and the counter unchanged."""
        count = rows.count
        first = self._send_pid + 1
        last = first + count - 1
        if last > PACKET_ID_MAX:
            raise PacketIdExhausted("packet ID roll over: renegotiate the data channel key")
        if peer_id is None:
            plains, outs, aads = rows.stamp(self._v1_op, False, first)
        else:
            if not 0 <= peer_id <= NO_PEER_ID:
                raise ValueError(f"peer-id {peer_id} does not fit in 24 bits")
            plains, outs, aads = rows.stamp(self._v2_word | peer_id, True, first)
        self._send_pid = last
        self._seal_rows(first, plains, outs, aads)
        rows.sealed()
        self.sealed += count

    def open_rows(self, rows: OpenRows, now: float) -> list[bool | None] | None:
        """`open` for `rows.count` datagrams at once: per row, authenticate (the tag), then
        the replay window (only after authentication), exactly as `open` in this order; the
        same counters. Per row: True (its plaintext is left), False (its tag did not verify)
        or None (authentic, refused by the replay window), so the caller can say why each row
        was dropped. None, with nothing done or counted, when the rows are not P_DATA_V1/V2
        of this key_id (the caller then opens them one by one, which counts them)."""
        first = rows.first_byte
        if first == self._v2_op:
            v2 = True
        elif first == self._v1_op:
            v2 = False
        else:
            return None
        cts, outs, aads, pids = rows.prepare(v2)
        # Every tag first, then the replay window in row order: the same decisions as one by
        # one (a decryption does not depend on the window), each pid still consulted only
        # after its own tag verified.
        authentic = self._open_rows(pids, cts, outs, aads)
        accept = self.replay.accept
        oks: list[bool | None] = []
        good = 0
        for pid, verified in zip(pids, authentic, strict=True):
            if not verified:
                self.auth_failures += 1
                oks.append(False)
                continue
            if not accept(pid, now):
                self.replays += 1
                oks.append(None)
                continue
            oks.append(True)
            good += 1
        self.opened += good
        return oks

    def open(self, buf: Buffer, now: float) -> bool:
        """Authenticate and decrypt the datagram in `buf` in place; True leaves the plaintext.

        False means the packet must be dropped, and one counter says why: `short` (too short
        for header, packet-id and tag, or a buffer without AEAD_ASSEMBLY_SIZE of tailroom),
        `misrouted` (not P_DATA_V1/V2 of this key_id), `auth_failures` (the tag did not
        verify), `replays` (authentic, but refused by the replay window, which is consulted
        only after authentication). Never raises on any input. After False the buffer's window
        is the datagram's again but its contents are unspecified (decryption may have run).
        """
        size = len(buf)
        if size < DATA_V1_OVERHEAD:
            self.short += 1
            return False
        try:
            buf.inc_len(AEAD_ASSEMBLY_SIZE)  # room to put the tag behind the ciphertext
        except BoundsError:  # a buffer without the frame's tailroom: drop, never raise
            self.short += 1
            return False
        sealed = buf.data
        first = sealed[0]
        if first == self._v2_op:
            if size < DATA_V2_OVERHEAD:
                buf.truncate(size)
                self.short += 1
                return False
            ct_at = DATA_V2_OVERHEAD
            aad_from = 0
        elif first == self._v1_op:
            ct_at = DATA_V1_OVERHEAD
            aad_from = _V1_OPCODE_SIZE
        else:
            buf.truncate(size)
            self.misrouted += 1
            return False
        tag_at = ct_at - AEAD_TAG_SIZE
        pid: int = _PACKET_ID.unpack_from(sealed, tag_at - PACKET_ID_SIZE)[0]
        if not self._open(sealed, aad_from, tag_at, ct_at, size, pid):
            buf.truncate(size)
            self.auth_failures += 1
            return False
        if not self.replay.accept(pid, now):
            buf.truncate(size)
            self.replays += 1
            return False
        buf.advance(ct_at)
        buf.truncate(size - ct_at)
        self.opened += 1
        return True
