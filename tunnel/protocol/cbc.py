"""The CBC + HMAC data channel (AES-128/192/256-CBC, HMAC-SHA1/224/256/384/512), in place.

What a stock peer uses when it negotiates a CBC cipher (`data-ciphers AES-256-CBC`) or falls back
to one (`data-ciphers-fallback`, a 2.3-style peer). Wire layout (`crypto.c:
openvpn_encrypt_v1()/openvpn_decrypt_v1()`; TLS mode uses the short 4-byte packet-id,
`init.c: do_init_crypto_tls()`):

    P_DATA_V2:  op|kid (1) | peer-id (3) | HMAC (H) | IV (16) | E(packet-id (4) | payload | pad)
    P_DATA_V1:  op|kid (1) |               HMAC (H) | IV (16) | E(packet-id (4) | payload | pad)

    HMAC = HMAC-digest(hmac key, IV || ciphertext)   (encrypt-then-MAC; the op byte and
           peer-id are not covered, unlike AEAD's AAD)
    pad  = PKCS#7 to the 16-byte block, 1..16 bytes

Keys come from the same key2 block as AEAD (`prf.split_key2`'s slots): the cipher key is the
first key-length bytes of the direction's 64-byte cipher slot, the HMAC key the first
digest-size bytes of its 64-byte hmac slot (`crypto.c: init_key_ctx()`).

Memory: like the AEAD path, a packet is sealed where it lies in its pooled buffer, and no payload
byte is copied. One CBC context per direction lives as long as the key; `cryptography` fixes a
context's IV at creation, so instead of a new context (an allocation) per packet we use CBC's own
chaining: the encryptor first encrypts a random block R, whose output C_r = E(R xor C_prev) is a
fresh uniformly random block, and it becomes the chaining value for the packet - exactly CBC with
IV = C_r, which is what goes on the wire. Opening feeds IV || ciphertext to the persistent
decryptor and discards the first output block (the IV's own, garbage), leaving CBC(IV)'s
plaintext. `update_into` may write up to a block minus one byte beyond its input, hence the
tailroom. The random block comes from an AES-CTR keystream under a random key (a CSPRNG, like
OpenVPN's `prng_bytes()`), written straight into the IV slot. The one per-packet object beyond
slices and ints is the HMAC digest (`hmac.digest` returns 20..64 bytes; Python offers no
MAC-into-buffer call).
"""

from __future__ import annotations

import hmac
import os
import struct
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core import BoundsError, Buffer, FrameBuilder
from tunnel.protocol.constants import NO_PEER_ID
from tunnel.protocol.datakey import PACKET_ID_MAX, PacketIdExhausted
from tunnel.protocol.hmackey import HMAC_DIGESTS, CbcDirectionKey, HmacCipherKey
from tunnel.protocol.replay import ReplayWindow

__all__ = [
    "CBC_BLOCK_SIZE",
    "CBC_CIPHERS",
    "CBC_PADDING",
    "HMAC_DIGESTS",
    "CbcDirectionKey",
    "CbcHmacKey",
    "cbc_overhead",
    "register_cbc",
    "split_key2_cbc",
]

CBC_BLOCK_SIZE: Final = 16
"""AES block = IV size = the most PKCS#7 padding adds."""
CBC_PADDING: Final = "cbc-padding"
"""The registration of the PKCS#7 padding (its expansion is the block size): the MSS clamp
rounds to it (mssfix.mss_for)."""
CBC_CIPHERS: Final[dict[str, int]] = {"AES-128-CBC": 16, "AES-192-CBC": 24, "AES-256-CBC": 32}
"""OpenVPN cipher name -> key length in bytes."""
_OP_PEER_ID_SIZE: Final = 4
_V1_OP_SIZE: Final = 1
_PACKET_ID_SIZE: Final = 4
_UPDATE_SLACK: Final = CBC_BLOCK_SIZE - 1  # `update_into` wants len(out) >= len(in) + 15
_SLOT_LEN: Final = 64
_KEY2_LEN: Final = 256
_ZERO_BLOCK: Final = bytes(CBC_BLOCK_SIZE)
_PACKET_ID: Final = struct.Struct(">I")
_V2_WORD: Final = struct.Struct(">I")
_PADS: Final = tuple(bytes([n]) * n for n in range(CBC_BLOCK_SIZE + 1))


def cbc_overhead(digest: str, *, v2: bool = True) -> int:
    """The most bytes a CBC datagram adds to its payload (header, HMAC, IV, packet-id, pad)."""
    op = _OP_PEER_ID_SIZE if v2 else _V1_OP_SIZE
    return op + HMAC_DIGESTS[digest] + CBC_BLOCK_SIZE + _PACKET_ID_SIZE + CBC_BLOCK_SIZE


def register_cbc(builder: FrameBuilder, digest: str) -> None:
    """Register CBC+HMAC's geometry beyond the shared op/peer-id and packet-id words.

    Headroom for the HMAC and the IV; expansion for the PKCS#7 padding (it goes on the wire);
    tailroom for `update_into`'s slack, plus the datagram's header bytes, because a received
    datagram is placed at the frame's headroom, header and all (so its end reaches that much
    further into the block than a payload would).
    """
    head = HMAC_DIGESTS[digest] + CBC_BLOCK_SIZE
    builder.reserve("cbc-hmac+iv", headroom=head)
    builder.reserve(CBC_PADDING, expansion=CBC_BLOCK_SIZE)
    builder.reserve(
        "cbc-assembly", tailroom=_UPDATE_SLACK + head + _OP_PEER_ID_SIZE + _PACKET_ID_SIZE
    )


def split_key2_cbc(
    key2: bytes, *, key_len: int, hmac_len: int, is_server: bool
) -> tuple[CbcDirectionKey, CbcDirectionKey]:
    """``(encrypt, decrypt)`` keys for our role: keys[0] client->server, keys[1] back."""
    if len(key2) != _KEY2_LEN:
        raise ValueError(f"key2 must be {_KEY2_LEN} bytes, not {len(key2)}")
    if not (1 <= key_len <= _SLOT_LEN and 1 <= hmac_len <= _SLOT_LEN):
        raise ValueError("key lengths must be 1..64")

    def key_at(base: int) -> CbcDirectionKey:
        hmac_at = base + _SLOT_LEN
        return CbcDirectionKey(
            bytes(key2[base : base + key_len]), bytes(key2[hmac_at : hmac_at + hmac_len])
        )

    client_to_server, server_to_client = key_at(0), key_at(2 * _SLOT_LEN)
    if is_server:
        return server_to_client, client_to_server
    return client_to_server, server_to_client


class CbcHmacKey(HmacCipherKey):
    """One key_id's CBC+HMAC state for both directions: the CBC contexts and the IV source
    (the checks and HMAC keys are `HmacCipherKey`'s; the packet-id, counters and replay
    window `DataCipherKey`'s)."""

    __slots__ = ("_decrypt_update", "_encrypt_update", "_random_into", "overhead")

    def __init__(
        self,
        *,
        key_id: int,
        cipher: str,
        auth: str,
        encrypt: CbcDirectionKey,
        decrypt: CbcDirectionKey,
        replay: ReplayWindow,
    ) -> None:
        super().__init__(key_id=key_id, cipher=cipher, auth=auth, encrypt=encrypt,
                         decrypt=decrypt, replay=replay, key_lens=CBC_CIPHERS, kind="CBC cipher")
        self.overhead = cbc_overhead(self.auth)
        # The IV given here is only the chain's starting value: every packet starts with a
        # random block whose ciphertext becomes its IV (module docstring).
        start = bytes(CBC_BLOCK_SIZE)
        self._encrypt_update = (
            Cipher(algorithms.AES(encrypt.cipher_key), modes.CBC(start)).encryptor().update_into
        )
        self._decrypt_update = (
            Cipher(algorithms.AES(decrypt.cipher_key), modes.CBC(start)).decryptor().update_into
        )
        keystream = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16)))
        self._random_into = keystream.encryptor().update_into

    def seal(self, buf: Buffer, peer_id: int | None) -> None:
        """Turn the plaintext in `buf` into a whole datagram, in place (see `DataKey.seal`)."""
        pid = self._send_pid + 1
        if pid > PACKET_ID_MAX:
            raise PacketIdExhausted("packet ID roll over: renegotiate the data channel key")
        if peer_id is not None and not 0 <= peer_id <= NO_PEER_ID:
            raise ValueError(f"peer-id {peer_id} does not fit in 24 bits")
        size = len(buf)
        pad = CBC_BLOCK_SIZE - (_PACKET_ID_SIZE + size) % CBC_BLOCK_SIZE
        op_size = _V1_OP_SIZE if peer_id is None else _OP_PEER_ID_SIZE
        iv_at = op_size + self._hmac_size
        pt_at = iv_at + CBC_BLOCK_SIZE
        head = pt_at + _PACKET_ID_SIZE
        buf.reserve_head(head)  # raises before any change when the headroom is short
        try:
            buf.inc_len(pad + _UPDATE_SLACK)
        except BoundsError:
            buf.advance(head)
            raise
        datagram = buf.data
        if peer_id is None:
            datagram[0] = self._v1_op
        else:
            _V2_WORD.pack_into(datagram, 0, self._v2_word | peer_id)
        _PACKET_ID.pack_into(datagram, pt_at, pid)
        end = head + size + pad
        datagram[end - pad : end] = _PADS[pad]
        self._random_into(_ZERO_BLOCK, datagram[iv_at:])  # 16 keystream bytes into the IV slot
        # [R | packet-id, payload, pad] -> [IV | ciphertext], in place, one pass.
        self._encrypt_update(datagram[iv_at:end], datagram[iv_at:])
        datagram[op_size:iv_at] = hmac.digest(self._hmac_out, datagram[iv_at:end], self._digest)
        buf.truncate(end)
        self._send_pid = pid
        self.sealed += 1

    def open(self, buf: Buffer, now: float) -> bool:
        """Verify, decrypt and replay-check in place; False drops (see `DataKey.open`)."""
        size = len(buf)
        sealed = buf.data
        iv_at = self._iv_at(sealed)
        if not iv_at:
            return False
        pt_at = iv_at + CBC_BLOCK_SIZE
        ct_len = size - pt_at
        if ct_len < CBC_BLOCK_SIZE or ct_len % CBC_BLOCK_SIZE:
            self.short += 1
            return False
        try:
            buf.inc_len(_UPDATE_SLACK)
        except BoundsError:
            self.short += 1
            return False
        sealed = buf.data
        tag = hmac.digest(self._hmac_in, sealed[iv_at:size], self._digest)
        if not hmac.compare_digest(tag, sealed[iv_at - self._hmac_size : iv_at]):
            buf.truncate(size)
            self.auth_failures += 1
            return False
        # Authentic: decrypt [IV | ciphertext]; the first output block is discarded.
        self._decrypt_update(sealed[iv_at:size], sealed[iv_at:])
        pad = sealed[size - 1]
        body = ct_len - _PACKET_ID_SIZE - pad  # payload bytes
        if not 1 <= pad <= CBC_BLOCK_SIZE or body < 0 or sealed[size - pad : size] != _PADS[pad]:
            buf.truncate(size)
            self.auth_failures += 1  # authentic but malformed: the peer's key or code is wrong
            return False
        pid: int = _PACKET_ID.unpack_from(sealed, pt_at)[0]
        if not self.replay.accept(pid, now):
            buf.truncate(size)
            self.replays += 1
            return False
        buf.advance(pt_at + _PACKET_ID_SIZE)
        buf.truncate(body)
        self.opened += 1
        return True

    def _repr_extra(self) -> str:
        return f" auth={self.auth}"
