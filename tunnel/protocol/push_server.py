"""The server half of push (push.c: `process_incoming_push_request`, `send_push_reply`).

A PUSH_REQUEST (or, for a client that announced IV_PROTO_REQUEST_PUSH, the end of its key_id 0
handshake) is answered with the client's push list plus the negotiated items: peer-id, cipher,
protocol-flags (cc-exit, dyn-tls-crypt) and tun-mtu for a client that sent IV_MTU. A repeated
request within 30 s of the reply is ignored, as stock does. A client that may not in (failed
authentication, no shared cipher, a denied client-auth, a push list too long) is answered with
AUTH_FAILED and its session lingers a few seconds so the message gets there.

The client's push list itself comes from the server (`Session(push_items=)`); the session
assembles what only it knows and this object decides and builds.
"""

from __future__ import annotations

from typing import Final

from tunnel.protocol.errors import SessionEnd
from tunnel.protocol.messages import build_push_reply
from tunnel.protocol.settings import SessionSettings

__all__ = ["AUTH_FAILED_LINGER", "PUSH_REPEAT_GUARD", "PushServer"]

PUSH_REPEAT_GUARD: Final = 30.0
"""A stock server ignores a second PUSH_REQUEST within 30 s of its reply (push.c)."""
AUTH_FAILED_LINGER: Final = 5.0
"""A session that failed authentication lingers this long so AUTH_FAILED reaches the client."""


class PushServer:
    """Push state of one client instance of a server."""

    KEYWORDS: Final = frozenset({"PUSH_REQUEST", "EXIT"})

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.requested = False  # the client sent PUSH_REQUEST at least once
        self.replied_at: float | None = None
        # Why this client may not in (sent as AUTH_FAILED), and the exact text when a
        # client-deny named one; when the lingering session closes.
        self.refusal: str | None = None
        self.refusal_text: str | None = None
        self.close_at: float | None = None

    def on_message(self, keyword: str) -> bool:
        """A control message in `KEYWORDS`: True if a push reply should be sent now; raises
        `SessionEnd` for the client's EXIT."""
        if keyword == "PUSH_REQUEST":
            self.requested = True
            return True
        assert keyword == "EXIT", keyword
        raise SessionEnd("client exited (explicit-exit-notify)", restart=False)

    def refuse(self, reason: str, text: str | None = None) -> None:
        self.refusal = reason
        if text is not None:
            self.refusal_text = text

    def refusal_message(self) -> str:
        return self.refusal_text or f"AUTH_FAILED,{self.refusal}"

    def linger(self, now: float) -> None:
        """Close a little later, so the AUTH_FAILED just queued reaches the client."""
        if self.close_at is None:
            self.close_at = now + AUTH_FAILED_LINGER

    def reply_wanted(self, now: float, cipher: str | None) -> bool:
        """False while a repeat guard runs or nothing is negotiated yet (the client repeats)."""
        if self.replied_at is not None and now - self.replied_at < PUSH_REPEAT_GUARD:
            return False
        return cipher is not None

    def build_reply(self, items: list[str], *, cipher: str, tx_peer_id: int | None,
                    cc_exit: bool, dyn_tls_crypt: bool, tun_mtu: int | None) -> list[str] | None:
        """The PUSH_REPLY message(s); None (and refused) when they cannot be built."""
        if tx_peer_id is not None:
            items.append(f"peer-id {tx_peer_id}")
        items.append(f"cipher {cipher}")
        flags = ["cc-exit"] if cc_exit else []
        if dyn_tls_crypt:
            flags.append("dyn-tls-crypt")  # push.c: after cc-exit (and tls-ekm)
        if flags:
            items.append("protocol-flags " + " ".join(flags))
        if tun_mtu is not None:
            items.append(f"tun-mtu {tun_mtu}")
        try:
            return build_push_reply(items)
        except ValueError as exc:
            # Only reachable from per-client pushes (the config's are bounded when it is
            # read): stock logs "--push option is too long" and sends no reply either.
            self.refuse(f"cannot push the options: {exc}")
            return None
