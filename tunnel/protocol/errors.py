"""Exceptions raised by the protocol layer.

Three kinds, because callers react to them differently:

* ``ProtocolError`` - one received datagram is malformed or unacceptable. The caller counts it
  and drops it; the session carries on (OpenVPN's ``goto error`` + ``n_soft_errors++`` in
  ``ssl.c: tls_pre_decrypt()``).
* ``HandshakeError`` - a handshake or authentication failed; the key state (or the session) is
  torn down and the message is worth logging as is.
* ``ConfigError`` - a local setting is unusable; raised before any packet moves.
"""

from __future__ import annotations

__all__ = ["ConfigError", "HandshakeError", "ProtocolError", "PushRejected", "SessionEnd"]


class ProtocolError(ValueError):
    """A received packet is malformed or unacceptable; count it and drop it."""


class PushRejected(ProtocolError):
    """Client: `pull-filter reject` matched a pushed option. Stock restarts the connection
    (push.c: SIGUSR1 "Offending option received from server"), so the session ends with a
    restart rather than for good."""


class HandshakeError(Exception):
    """A TLS / key-method-2 / authentication step failed; the message says which and why."""


class ConfigError(ValueError):
    """A local configuration value is invalid or unsupported."""


class SessionEnd(Exception):
    """Raised by a part of the session (push, keepalive) to end it: the session closes with
    `reason`, as a restart (`restart=True`: a client reconnects) or for good."""

    def __init__(self, reason: str, *, restart: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.restart = restart
