"""What every data-channel key kind shares: `DataCipherKey`, the base of `DataKey` (AEAD) and
`CbcHmacKey` (CBC + HMAC).

One key_id's state for both directions: its opcodes, the send packet-id (short form, counting
from 1, never rolling over), the receive replay window (consulted only after authentication)
and the counters a drop is told by. The kinds add their ciphers and their `seal`/`open`, which
are the hot path: they read these slots directly (an inherited slot costs what an own one
does), and check the packet-id limit inline rather than through a method call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from core import Buffer
from tunnel.protocol.constants import KEY_ID_MASK, OPCODE_SHIFT, Opcode
from tunnel.protocol.replay import ReplayWindow

if TYPE_CHECKING:
    from tunnel.protocol.rows import OpenRows, SealRows

__all__ = [
    "PACKET_ID_MAX",
    "PACKET_ID_WRAP_TRIGGER",
    "PEER_ID_BITS",
    "DataCipherKey",
    "PacketIdExhausted",
]

PACKET_ID_MAX: Final = 0xFFFFFFFF
"""The last usable short-form packet-id; it may not roll over (`packet_id_send_update`)."""
PACKET_ID_WRAP_TRIGGER: Final = 0xFF000000
"""Once the send packet-id reaches this, a stock peer starts a soft reset (`ssl.c`)."""
PEER_ID_BITS: Final = 24
"""P_DATA_V2's first word is (op|key_id) << 24 | peer-id."""


class PacketIdExhausted(RuntimeError):
    """The send packet-id reached 0xFFFFFFFF: this key can send no more ("packet ID roll over").

    The session must have renegotiated long before (`needs_renegotiation`); hitting this means it
    did not, and the key must be retired.
    """


class DataCipherKey:
    """One key_id's data-channel state, whatever the cipher; a kind implements `seal`/`open`.

    `seal(buf, peer_id)` turns the plaintext in `buf` into a whole datagram in place
    (P_DATA_V2 with `peer_id`, else P_DATA_V1); `BoundsError`/`ValueError`/`PacketIdExhausted`
    leave `buf` and the counter unchanged. `open(buf, now) -> bool` authenticates, decrypts and
    replay-checks in place and never raises; False is counted in exactly one of `short`,
    `misrouted`, `auth_failures`, `replays`.
    """

    __slots__ = (
        "_send_pid",
        "_v1_op",
        "_v2_op",
        "_v2_word",
        "auth_failures",
        "cipher",
        "key_id",
        "misrouted",
        "opened",
        "replay",
        "replays",
        "sealed",
        "short",
    )

    def __init__(self, *, key_id: int, cipher: str, replay: ReplayWindow) -> None:
        if not 0 <= key_id <= KEY_ID_MASK:
            raise ValueError(f"key_id {key_id} outside 0..{KEY_ID_MASK}")
        self.key_id = key_id
        self.cipher = cipher
        self.replay = replay
        self._v1_op = (Opcode.P_DATA_V1 << OPCODE_SHIFT) | key_id
        self._v2_op = (Opcode.P_DATA_V2 << OPCODE_SHIFT) | key_id
        self._v2_word = self._v2_op << PEER_ID_BITS
        self._send_pid = 0  # the last packet-id sent; the first packet carries 1
        self.sealed = 0
        self.opened = 0
        self.auth_failures = 0
        self.replays = 0
        self.short = 0
        self.misrouted = 0

    @property
    def send_packet_id(self) -> int:
        """The packet-id of the last sealed packet (0 before the first)."""
        return self._send_pid

    @property
    def needs_renegotiation(self) -> bool:
        """True once the send packet-id reached PACKET_ID_WRAP_TRIGGER: time for a soft reset.

        (`packet_id.h: packet_id_close_to_wrapping()`; the session polls this.)
        """
        return self._send_pid >= PACKET_ID_WRAP_TRIGGER

    seals_rows = False
    """True for a kind with `seal_rows` (many datagrams in one batch: DataKey)."""

    def seal(self, buf: Buffer, peer_id: int | None) -> None:
        raise NotImplementedError

    def seal_rows(self, rows: SealRows, peer_id: int | None) -> None:
        """Many datagrams at once (only where `seals_rows`)."""
        raise NotImplementedError

    def open(self, buf: Buffer, now: float) -> bool:
        raise NotImplementedError

    def open_rows(self, rows: OpenRows, now: float) -> list[bool | None] | None:
        """Many datagrams at once (only where `seals_rows`): per row True (opened), False
        (authentication failed) or None (a replay)."""
        raise NotImplementedError

    def _repr_extra(self) -> str:
        """What a kind adds to the repr after the cipher (never key material)."""
        return ""

    def __repr__(self) -> str:
        # Counters and identity only: key material and IVs never appear in logs.
        return (
            f"<{type(self).__name__} key_id={self.key_id} cipher={self.cipher}"
            f"{self._repr_extra()} send_pid={self._send_pid} sealed={self.sealed} "
            f"opened={self.opened} auth_failures={self.auth_failures} replays={self.replays} "
            f"short={self.short} misrouted={self.misrouted}>"
        )
