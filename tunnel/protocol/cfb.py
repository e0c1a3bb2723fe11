"""AES in CFB or OFB mode + HMAC: OpenVPN's non-AEAD stream modes (`cipher AES-256-CFB`, old
configs), as stock 2.6 still runs them (crypto.c: openvpn_encrypt_v1 / openvpn_decrypt_v1).

Wire form (P_DATA_V2; V1 has the one opcode byte):

    op|key_id, peer-id (4) | HMAC (digest size) | IV (16) | ciphertext (as long as the payload)

The IV is the long-form packet-id, u32 id and u32 time (seconds), then zeros: a mode that
turns AES into a keystream must never reuse an IV, and the packet-id never repeats within a
key. The packet-id is not in the plaintext (as CBC's is) and there is no padding. The HMAC
covers IV and ciphertext; replay is checked on the IV's (time, id) after the HMAC verified,
as stock's packet_id_test does for the long form (a newer time starts a new window, an older
one is refused). Keys come from key2 exactly as for CBC (`cbc.split_key2_cbc`).
"""

from __future__ import annotations

import hmac
import struct
from typing import Final

# cryptography >= 47 keeps the legacy modes apart ("decrepit"); pyproject requires it.
from cryptography.hazmat.decrepit.ciphers.modes import CFB, OFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from core import BoundsError, Buffer, FrameBuilder
from tunnel.protocol.constants import NO_PEER_ID
from tunnel.protocol.datakey import PACKET_ID_MAX, PacketIdExhausted
from tunnel.protocol.hmackey import HMAC_DIGESTS, CbcDirectionKey, HmacCipherKey
from tunnel.protocol.replay import ReplayWindow

__all__ = ["CFB_HMAC_IV", "STREAM_CIPHERS", "StreamHmacKey", "register_stream_cipher"]

STREAM_CIPHERS: Final[dict[str, tuple[int, str]]] = {
    f"AES-{bits}-{mode}": (bits // 8, mode) for mode in ("CFB", "OFB") for bits in (128, 192, 256)
}
"""OpenVPN cipher name -> (key length in bytes, mode). CFB is OpenSSL's aes-N-cfb (CFB128)."""
_KEY_LENS: Final = {name: key_len for name, (key_len, _mode) in STREAM_CIPHERS.items()}
CFB_HMAC_IV: Final = "cfb-ofb-hmac+iv"
"""The registration of the HMAC and the IV: stock's MSS also counts the long-form packet-id's
8 bytes although they ride in the IV (mtu.c: calculate_crypto_overhead), mssfix.mss_for adds
them."""
_IV_SIZE: Final = 16
_OP_PEER_ID_SIZE: Final = 4
_V1_OP_SIZE: Final = 1
_V2_WORD: Final = struct.Struct(">I")
_LONG_PID: Final = struct.Struct(">II")
_IV_PAD: Final = bytes(_IV_SIZE - _LONG_PID.size)


def register_stream_cipher(builder: FrameBuilder, digest: str) -> None:
    """The HMAC and the IV in front (beside the shared op/peer-id and packet-id words)."""
    builder.reserve(CFB_HMAC_IV, headroom=HMAC_DIGESTS[digest] + _IV_SIZE)


class StreamHmacKey(HmacCipherKey):
    """One key_id's CFB/OFB + HMAC state for both directions (the checks and HMAC keys are
    `HmacCipherKey`'s). `wall_time`: the seconds the long-form packet-id carries (stock: the
    time of the key's first packet)."""

    __slots__ = ("_cipher_in", "_cipher_out", "_mode", "_rx_time", "_time")

    def __init__(self, *, key_id: int, cipher: str, auth: str, encrypt: CbcDirectionKey,
                 decrypt: CbcDirectionKey, replay: ReplayWindow, wall_time: int) -> None:
        super().__init__(key_id=key_id, cipher=cipher, auth=auth, encrypt=encrypt,
                         decrypt=decrypt, replay=replay, key_lens=_KEY_LENS, kind="cipher")
        mode = STREAM_CIPHERS[self.cipher][1]
        self._cipher_out = algorithms.AES(encrypt.cipher_key)
        self._cipher_in = algorithms.AES(decrypt.cipher_key)
        self._mode = CFB if mode == "CFB" else OFB
        self._time = wall_time & 0xFFFFFFFF
        self._rx_time = -1  # the time of the receive window (none yet)

    def seal(self, buf: Buffer, peer_id: int | None) -> None:
        """Turn the plaintext in `buf` into a whole datagram, in place (see `DataKey.seal`)."""
        pid = self._send_pid + 1
        if pid > PACKET_ID_MAX:
            raise PacketIdExhausted("packet ID roll over: renegotiate the data channel key")
        op_size = _V1_OP_SIZE if peer_id is None else _OP_PEER_ID_SIZE
        if peer_id is not None and not 0 <= peer_id <= NO_PEER_ID:
            raise ValueError(f"peer-id {peer_id} does not fit in 24 bits")
        iv_at = op_size + self._hmac_size
        head = iv_at + _IV_SIZE
        plain = bytes(buf.data)
        buf.reserve_head(head)  # raises before any change when the headroom is short
        datagram = buf.data
        iv = _LONG_PID.pack(pid, self._time) + _IV_PAD
        encryptor = Cipher(self._cipher_out, self._mode(iv)).encryptor()
        datagram[head:] = encryptor.update(plain) + encryptor.finalize()
        datagram[iv_at:head] = iv
        if peer_id is None:
            datagram[0] = self._v1_op
        else:
            _V2_WORD.pack_into(datagram, 0, self._v2_word | peer_id)
        datagram[op_size:iv_at] = hmac.digest(self._hmac_out, datagram[iv_at:], self._digest)
        self._send_pid = pid
        self.sealed += 1

    def open(self, buf: Buffer, now: float) -> bool:
        """Verify, replay-check and decrypt in place; False drops (see `DataKey.open`)."""
        sealed = buf.data
        size = len(sealed)
        iv_at = self._iv_at(sealed)
        if not iv_at:
            return False
        head = iv_at + _IV_SIZE
        if size < head:
            self.short += 1
            return False
        tag = hmac.digest(self._hmac_in, sealed[iv_at:size], self._digest)
        if not hmac.compare_digest(tag, sealed[iv_at - self._hmac_size : iv_at]):
            self.auth_failures += 1
            return False
        pid, stamp = _LONG_PID.unpack_from(sealed, iv_at)
        if not self._accept(pid, stamp, now):
            self.replays += 1
            return False
        iv = bytes(sealed[iv_at:head])
        decryptor = Cipher(self._cipher_in, self._mode(iv)).decryptor()
        sealed[head:size] = decryptor.update(bytes(sealed[head:size])) + decryptor.finalize()
        try:
            buf.advance(head)
        except BoundsError:  # cannot happen: size >= head was checked
            self.short += 1
            return False
        self.opened += 1
        return True

    def _accept(self, pid: int, stamp: int, now: float) -> bool:
        """packet_id.c: packet_id_test for the long form: a newer time starts a new window."""
        if pid == 0 or stamp < self._rx_time:
            return False
        if stamp > self._rx_time:
            self._rx_time = stamp
            self.replay = ReplayWindow(self.replay.size, self.replay.seconds)
        return self.replay.accept(pid, now)
