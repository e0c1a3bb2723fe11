"""What the two HMAC data-channel kinds share: CBC + HMAC (`cbc.CbcHmacKey`) and CFB/OFB +
HMAC (`cfb.StreamHmacKey`), both stock's openvpn_encrypt_v1 / openvpn_decrypt_v1 (crypto.c).

Both lay a datagram out as `op|key_id (1) [| peer-id (3)] | HMAC (H) | IV (16) | ...`, with
the HMAC over IV and ciphertext, and both take one direction's keys as a cipher key and an
HMAC key of exact lengths. `HmacCipherKey` holds that part once: the checks of the cipher
name, the digest and the key lengths (in that order, ValueError), the HMAC state, and where a
received datagram's IV starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from tunnel.protocol.datakey import DataCipherKey
from tunnel.protocol.replay import ReplayWindow

__all__ = ["HMAC_DIGESTS", "CbcDirectionKey", "HmacCipherKey"]

HMAC_DIGESTS: Final[dict[str, int]] = {
    "SHA1": 20, "SHA224": 28, "SHA256": 32, "SHA384": 48, "SHA512": 64,
}
"""OpenVPN `auth` digest name -> HMAC size in bytes (also the HMAC key length used)."""

_OP_PEER_ID_SIZE: Final = 4
_V1_OP_SIZE: Final = 1


class CbcDirectionKey:
    """One direction's cipher key and HMAC key (CBC's, and CFB/OFB's: the same key2 slots).
    Never printed: the repr shows lengths only."""

    __slots__ = ("cipher_key", "hmac_key")

    def __init__(self, cipher_key: bytes, hmac_key: bytes) -> None:
        self.cipher_key = cipher_key
        self.hmac_key = hmac_key

    def __repr__(self) -> str:
        return f"CbcDirectionKey(<{len(self.cipher_key)} bytes>, hmac=<{len(self.hmac_key)} bytes>)"


class HmacCipherKey(DataCipherKey):
    """One key_id's HMAC state for both directions, beside a kind's cipher state.

    `key_lens`: the kind's cipher names -> key length in bytes; `kind`: how the refusal of
    another name calls it ("unsupported {kind} 'X': the names")."""

    __slots__ = ("_digest", "_hmac_in", "_hmac_out", "_hmac_size", "auth")

    def __init__(
        self,
        *,
        key_id: int,
        cipher: str,
        auth: str,
        encrypt: CbcDirectionKey,
        decrypt: CbcDirectionKey,
        replay: ReplayWindow,
        key_lens: Mapping[str, int],
        kind: str,
    ) -> None:
        name, digest = cipher.upper(), auth.upper()
        super().__init__(key_id=key_id, cipher=name, replay=replay)
        if name not in key_lens:
            raise ValueError(f"unsupported {kind} {cipher!r}: {', '.join(key_lens)}")
        if digest not in HMAC_DIGESTS:
            raise ValueError(f"unsupported HMAC digest {auth!r}: {', '.join(HMAC_DIGESTS)}")
        key_len, hmac_len = key_lens[name], HMAC_DIGESTS[digest]
        for label, direction in (("encrypt", encrypt), ("decrypt", decrypt)):
            if len(direction.cipher_key) != key_len or len(direction.hmac_key) != hmac_len:
                raise ValueError(f"{label} keys have the wrong length for {name}/{digest}")
        self.auth = digest
        self._digest = digest.lower()
        self._hmac_size = hmac_len
        self._hmac_out = encrypt.hmac_key
        self._hmac_in = decrypt.hmac_key

    def _iv_at(self, sealed: memoryview) -> int:
        """Where a received datagram's IV starts (behind the op byte, or the op/peer-id word,
        and the HMAC); 0 drops it, counted: empty is `short`, any other opcode or key_id
        `misrouted`. The caller checks the length behind it."""
        if not sealed:
            self.short += 1
            return 0
        first = sealed[0]
        if first == self._v2_op:
            return _OP_PEER_ID_SIZE + self._hmac_size
        if first == self._v1_op:
            return _V1_OP_SIZE + self._hmac_size
        self.misrouted += 1
        return 0
