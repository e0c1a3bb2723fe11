"""Server: keys whose authentication waits for an outside verdict (management-client-auth).

With `SessionSettings.defer_auth` every key's key-method 2 yields an `AuthRequested` event with
an auth id (stock's KID, counting from 1); the key's data key is not installed, and no
PUSH_REPLY goes out for key_id 0, until `Session.authorize` brings the verdict. No verdict
within hand-window of the first request is a deny.
"""

from __future__ import annotations

__all__ = ["DeferredAuth"]


class DeferredAuth:
    __slots__ = ("_next_id", "deadline", "hand_window", "pending")

    def __init__(self, hand_window: float) -> None:
        self.hand_window = hand_window
        self.pending: dict[int, int] = {}  # auth id -> key_id waiting for it
        self._next_id = 1  # stock's first KID is 1
        self.deadline: float | None = None

    def request(self, key_id: int, since: float) -> int:
        """A new key waits; returns its auth id. The first one starts the deadline."""
        auth_id = self._next_id
        self._next_id += 1
        self.pending[auth_id] = key_id
        if self.deadline is None:
            self.deadline = since + self.hand_window
        return auth_id

    def take(self, auth_id: int) -> int | None:
        """The key_id the verdict for `auth_id` is about (None: nothing waits on that id)."""
        return self.pending.pop(auth_id, None)

    def settled(self) -> None:
        """After a verdict: no deadline any more once nothing waits."""
        if not self.pending:
            self.deadline = None

    def waiting(self, key_id: int) -> bool:
        return key_id in self.pending.values()

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline
