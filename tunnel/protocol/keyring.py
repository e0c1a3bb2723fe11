"""The data keys of one session: current, next and lame duck (wireguard-go's `Keypairs`).

- `current` seals every outgoing packet.
- `next_id`: a key derived after a renegotiation but not yet sending; it becomes current once
  our key-method 2 is ACKed or the peer is seen sending on it (the session decides when).
- `lame_duck`: the previous current key, kept for opening packets still in flight until
  tran-window after the renegotiation began (ssl.c: lame_duck_must_die), then forgotten.

`by_id` indexes every live key by key_id (the low 3 bits of a data packet's first byte), so
the receive path finds its key with one list lookup. The list object is never replaced:
`Session.data_keys` is the same list.
"""

from __future__ import annotations

from tunnel.protocol.constants import KEY_ID_MASK
from tunnel.protocol.datacipher import DataCipherKey

__all__ = ["KeyRing"]


class KeyRing:
    __slots__ = ("by_id", "current", "lame_duck", "lame_duck_until", "next_id", "rotations")

    def __init__(self) -> None:
        self.by_id: list[DataCipherKey | None] = [None] * (KEY_ID_MASK + 1)
        self.current: DataCipherKey | None = None
        self.next_id: int | None = None
        self.lame_duck: DataCipherKey | None = None
        self.lame_duck_until = 0.0
        self.rotations = 0  # how many times `current` was replaced (renegotiations)

    def install(self, key: DataCipherKey) -> bool:
        """A newly derived key. The first becomes current (True); later ones wait as next."""
        self.by_id[key.key_id] = key
        if self.current is None:
            self.current = key
            self.next_id = None
            return True
        self.next_id = key.key_id
        return False

    def next_key(self, key_id: int) -> DataCipherKey | None:
        """The installed key waiting to send on `key_id`, if that is the next one."""
        return self.by_id[key_id] if self.next_id == key_id else None

    def rotate(self, new_key: DataCipherKey, lame_duck_until: float) -> bool:
        """Send on `new_key` from now on; the old current becomes the lame duck until
        `lame_duck_until` (a previous lame duck is dropped). False if nothing was replaced."""
        old = self.current
        self.current = new_key
        self.next_id = None
        if old is None or old is new_key:
            return False
        if self.lame_duck is not None:
            self.by_id[self.lame_duck.key_id] = None
        self.lame_duck = old
        self.lame_duck_until = lame_duck_until
        self.rotations += 1
        return True

    def expire(self, now: float) -> None:
        """Forget the lame duck once its time is up."""
        old = self.lame_duck
        if old is not None and now >= self.lame_duck_until:
            if self.by_id[old.key_id] is old:
                self.by_id[old.key_id] = None
            self.lame_duck = None

    def free_slot(self, key_id: int) -> None:
        """A new handshake starts on `key_id`: an expired key under that id must not open its
        packets (the current key is never removed this way)."""
        key = self.by_id[key_id]
        if key is not None and key is not self.current:
            self.by_id[key_id] = None

    def deadline(self) -> float | None:
        return self.lame_duck_until if self.lame_duck is not None else None

    def in_use(self, key_id: int) -> bool:
        """True if `key_id` is the current or the next key (its key state must stay)."""
        current = self.current
        return (current is not None and current.key_id == key_id) or self.next_id == key_id
