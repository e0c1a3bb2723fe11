"""Events the sans-I/O session and server hand out (drained with `next_event()`).

They tell the I/O layer what happened without it having to poll state: configure the TUN
device when the push arrives, reconnect after a ping-restart, log a refused client.

Every event about one client of a server carries its `peer_id`: the client's id in the server's
peer table (`Server.peer(peer_id)`), the same number it sends in P_DATA_V2. None on a client and
for input that belongs to no client yet. Ids are reused as late as possible, so an event names
the session that had the id when it happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunnel.protocol.messages import PushOptions


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """A key_id finished its TLS handshake and key-method-2 exchange."""

    key_id: int
    peer_common_name: str | None
    tls_version: str | None
    renegotiation: bool
    peer_id: int | None = None


@dataclass(frozen=True, slots=True)
class DataChannelReady:
    """Data keys exist and packets may flow (client: after PUSH_REPLY; server: after KM2)."""

    key_id: int
    cipher: str
    data_peer_id: int | None  # the peer-id sent in P_DATA_V2; None: P_DATA_V1
    peer_id: int | None = None


@dataclass(frozen=True, slots=True)
class PushApplied:
    """The client processed a PUSH_REPLY; the I/O layer configures the TUN device from it."""

    options: PushOptions


@dataclass(frozen=True, slots=True)
class ControlMessageReceived:
    """A control-channel text that the session did not consume itself (INFO, unknown...)."""

    text: str
    peer_id: int | None = None


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The session ended. `restart` says whether a client should connect again."""

    reason: str
    restart: bool
    peer_common_name: str | None = None
    peer_id: int | None = None
    address: tuple[str, int] | None = None  # where the peer was (a connection to close)


@dataclass(frozen=True, slots=True)
class ClientRefused:
    """A server refused a client during the handshake (bad certificate, no shared cipher)."""

    address: tuple[str, int]
    reason: str
    peer_id: int | None = None  # None: refused before it had a session


@dataclass(frozen=True, slots=True)
class PacketDropped:
    """A malformed or unauthenticated datagram was counted and dropped (rate-limited)."""

    address: tuple[str, int]
    reason: str
    count: int = field(default=1)  # this one and those not reported before it (rate limit)
    cause: str = field(default="malformed")  # one of tunnel.protocol.drops.CAUSES


@dataclass(frozen=True, slots=True)
class AuthRequested:
    """Server with defer_auth: a client's key waits for `Server.authorize` (management's
    client-auth / client-deny). `auth_id` is stock's KID: 1, 2, 3... per session."""

    peer_id: int | None
    auth_id: int
    reauth: bool  # a renegotiation of an established client
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the operator should read that is no error (a rate limit's summary)."""

    text: str
    warning: bool = False


Event = (
    HandshakeComplete
    | DataChannelReady
    | PushApplied
    | ControlMessageReceived
    | SessionClosed
    | ClientRefused
    | PacketDropped
    | AuthRequested
    | Notice
)
