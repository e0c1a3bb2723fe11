"""The client half of push (push.c, the client side of ssl_ncp.c).

After the key_id 0 handshake the client sends PUSH_REQUEST every `push_request_interval` until
a PUSH_REPLY (possibly in parts) arrives; the reply is filtered (pull-filter), parsed and
checked (cipher, compression), and its options are applied by the session. The server's other
messages for the client end it: AUTH_FAILED (exit or retry under auth-retry), RESTART, HALT,
EXIT. A pushed auth-token replaces the password in the key-method 2 of later keys.

Refusals are raised as `SessionEnd`; the session closes with its reason and restart flag.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from tunnel.protocol.compress import NON_STUB_KINDS
from tunnel.protocol.errors import ConfigError, ProtocolError, PushRejected, SessionEnd
from tunnel.protocol.messages import PushOptions, parse_push_reply
from tunnel.protocol.settings import SessionSettings

__all__ = ["PushClient"]

_COMPRESSION_REFUSED: Final = (
    "OPTIONS ERROR: server pushed compression settings that are not allowed and will result "
    "in a non-working connection. See also allow-compression in the manual."
)


class PushClient:
    """Push state of a client session: what was pushed, and when to ask again."""

    KEYWORDS: Final = frozenset({"PUSH_REPLY", "AUTH_FAILED", "RESTART", "HALT", "EXIT"})

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.pushed: PushOptions | None = None
        self._parts: PushOptions | None = None  # a PUSH_REPLY in parts, so far
        self.next_request: float | None = None
        self.cc_exit = False  # the server takes EXIT as a control message
        # A pushed auth-token as (username, token), sent instead of the password on
        # renegotiations; the username our credentials had, for a token pushed without one.
        self.auth_token: tuple[str | None, str] | None = None
        self.auth_rejected = False  # the server answered AUTH_FAILED
        self.token_rejected = False  # ... to the auth-token we sent
        self._auth_username: str | None = settings.username

    def request_due(self, now: float) -> bool:
        """True when a PUSH_REQUEST should go out now (and schedules the next one)."""
        if self.pushed is not None or (self.next_request is not None and now < self.next_request):
            return False
        self.next_request = now + self.settings.push_request_interval
        return True

    def on_message(self, keyword: str, text: str,
                   remote_cipher: str | None) -> tuple[PushOptions, str] | None:
        """A control message in `KEYWORDS`. Returns (options, data cipher) once a whole
        PUSH_REPLY was accepted; raises `SessionEnd` when the session must end."""
        if keyword == "PUSH_REPLY":
            return self._push_reply(text, remote_cipher)
        if keyword == "AUTH_FAILED":
            # push.c receive_auth_failed(): the same remote again (no_advance); a refused
            # auth-token is dropped and the real credentials are tried at once, whatever
            # auth-retry says; otherwise auth-retry none: exit, nointeract/interact: start over.
            self.auth_rejected = True
            self.token_rejected = self.auth_token is not None
            raise SessionEnd(f"server refused us: {text}",
                             restart=self.token_rejected or self.settings.auth_retry != "none")
        if keyword == "RESTART":
            raise SessionEnd(f"server sent {text}", restart=True)
        assert keyword in ("HALT", "EXIT"), keyword
        raise SessionEnd(f"server sent {text}", restart=keyword == "EXIT")

    def _push_reply(self, text: str, remote_cipher: str | None) -> tuple[PushOptions, str] | None:
        if self.pushed is not None:
            return None
        try:
            if self.settings.push_filter is not None:
                text = self.settings.push_filter(text)
            options, more = parse_push_reply(text, self._parts)
        except PushRejected as exc:
            # Stock restarts (SIGUSR1): the client reconnects under its connect-retry rules.
            raise SessionEnd(f"{exc}; Offending option received from server",
                             restart=True) from None
        except ProtocolError as exc:
            raise SessionEnd(f"bad PUSH_REPLY: {exc}", restart=False) from None
        if more:
            self._parts = options
            return None
        self._parts = None
        cipher = self.choose_cipher(options.cipher, remote_cipher)
        if (options.compression in NON_STUB_KINDS
                and self.settings.allow_compression != "asym"):
            # init.c do_deferred_options(): check_compression_settings_valid() fails.
            raise SessionEnd(_COMPRESSION_REFUSED, restart=False)
        self.pushed = options
        if options.auth_token:
            user = _token_user(options.auth_token_user) or self._auth_username
            self.auth_token = (user, options.auth_token)
        self.cc_exit = "cc-exit" in options.protocol_flags
        self.next_request = None
        return options, cipher

    def choose_cipher(self, pushed: str | None, remote: str | None) -> str:
        """The client's data cipher after the push, as stock decides it; `SessionEnd` if none.

        A pushed cipher must be in data-ciphers or be the configured fallback
        (`ssl_ncp.c: check_session_cipher()`); without one, the server's OCC `cipher`
        (`remote`) is used when it is in data-ciphers (poor man's NCP), else the fallback, but
        only when the server did not name a cipher at all (`check_pull_client_ncp()`).
        """
        s = self.settings
        allowed = [c.upper() for c in s.data_ciphers]
        fallback = s.data_ciphers_fallback.upper() if s.data_ciphers_fallback else None
        conf = ":".join(s.data_ciphers)
        if pushed is not None:
            if pushed.upper() in allowed or pushed.upper() == fallback:
                return pushed.upper()
            raise SessionEnd(f"negotiated cipher not allowed - {pushed} not in {conf}",
                             restart=False)
        if remote is not None and remote.upper() in allowed:
            return remote.upper()
        if remote is None and fallback is not None:
            return fallback
        if remote is not None:
            raise SessionEnd(
                f"failed to negotiate cipher with server. Add the server's cipher ('{remote}') "
                f"to --data-ciphers (currently '{conf}') if you want to connect to this server.",
                restart=False)
        raise SessionEnd("failed to negotiate cipher with server. Configure "
                         "--data-ciphers-fallback if you want to connect to this server.",
                         restart=False)

    def user_pass(self) -> tuple[str | None, str | None]:
        """What the next key-method 2 message carries as username and password.

        A pushed auth-token replaces the password (ssl.c: key_method_2_write()); otherwise the
        configured credentials, or under auth-nocache a fresh read from their source. A read
        that fails (file gone, no terminal) ends the session for good (`SessionEnd`), as
        stock's fatal error.
        """
        if self.auth_token is not None:
            return self.auth_token
        s = self.settings
        if s.username is not None or s.read_user_pass is None:
            return s.username, s.password
        try:
            username, password = s.read_user_pass()
        except (ConfigError, OSError) as exc:
            raise SessionEnd(f"auth-user-pass: {exc}", restart=False) from None
        self._auth_username = username  # an auth-token pushed later goes with it
        return username, password


def _token_user(encoded: str | None) -> str | None:
    """`auth-token-user` carries the username base64-encoded (push.c); unreadable: None."""
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
