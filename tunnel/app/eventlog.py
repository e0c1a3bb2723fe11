"""Protocol events -> log lines, in the words OpenVPN users grep for.

"Peer Connection Initiated with [AF_INET]192.0.2.7:51234", "Data Channel: cipher
'AES-256-GCM', peer-id: 0", "Inactivity timeout (--ping-restart), restarting": the same
phrases a stock OpenVPN prints, so existing runbooks and log watchers keep working. On a
server every line about one client carries OpenVPN's "common-name/address" prefix.

Secrets never reach the log: pushed options are summarised field by field (an auth-token is
not one of the fields printed), and text from the peer is shown quoted and cut short.
"""

from __future__ import annotations

import logging

from tunnel.app.link import format_address
from tunnel.app.logsetup import VERBOSE
from tunnel.app.peers import Peer, PeerRegistry
from tunnel.protocol.drops import (
    AUTH_FAILED,
    BAD_SOURCE,
    MALFORMED,
    NO_SESSION,
    RATE_LIMITED,
    REPLAY,
)
from tunnel.protocol.events import (
    ClientRefused,
    ControlMessageReceived,
    DataChannelReady,
    Event,
    HandshakeComplete,
    Notice,
    PacketDropped,
    PushApplied,
    SessionClosed,
)
from tunnel.protocol.messages import PushOptions

__all__ = ["ClientEventLog", "ServerEventLog", "describe_push", "peer_text"]

Address = tuple[str, int]
_PEER_TEXT_MAX = 200


def peer_text(text: str) -> str:
    """A peer-supplied string made safe to log: quoted, printable, bounded."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:_PEER_TEXT_MAX])
    return repr(cleaned + ("..." if len(text) > _PEER_TEXT_MAX else ""))


def describe_push(options: PushOptions) -> list[str]:
    """One line per pushed setting; credentials (auth-token) deliberately left out."""
    lines: list[str] = []
    if options.ifconfig is not None:
        lines.append(f"ifconfig {options.ifconfig[0]} {options.ifconfig[1]}")
    if options.ifconfig_ipv6 is not None:
        lines.append(f"ifconfig-ipv6 {options.ifconfig_ipv6[0]}")
    if options.topology is not None:
        lines.append(f"topology {options.topology}")
    if options.route_gateway is not None:
        lines.append(f"route-gateway {options.route_gateway}")
    lines.extend(f"route {net} {mask}" + (f" {gw}" if gw else "")
                 for net, mask, gw in options.routes)
    lines.extend(f"route-ipv6 {net}" for net in options.routes_ipv6)
    for name, value in (("peer-id", options.peer_id), ("cipher", options.cipher),
                        ("ping", options.ping), ("ping-restart", options.ping_restart),
                        ("tun-mtu", options.tun_mtu)):
        if value is not None:
            lines.append(f"{name} {value}")
    if options.protocol_flags:
        lines.append("protocol-flags " + " ".join(sorted(options.protocol_flags)))
    return lines


# The level of a drop report by cause: stock logs decrypt failures and replays at verb 1
# (D_CRYPT_ERRORS, D_REPLAY_ERRORS), refusals for load at the default level; stray garbage
# and packets for no session only when asked for detail.
_DROP_LEVEL = {
    AUTH_FAILED: logging.INFO,
    REPLAY: logging.INFO,
    RATE_LIMITED: logging.WARNING,
    BAD_SOURCE: logging.WARNING,
    MALFORMED: VERBOSE,
    NO_SESSION: VERBOSE,
}
_REPLAY_HINT = (" -- see the man page entry for --no-replay and --replay-window for more info "
                "or silence this warning with --mute-replay-warnings")


def log_drop(log: logging.Logger, event: PacketDropped, address: str, *,
             mute_replay_warnings: bool) -> None:
    """One (rate-limited) drop report; `mute` then applies to it as to any message."""
    level = _DROP_LEVEL.get(event.cause, VERBOSE)
    hint = ""
    if event.cause == REPLAY:
        if mute_replay_warnings:
            level = logging.DEBUG
        else:
            hint = _REPLAY_HINT
    more = ""
    if event.count > 1:
        more = f" ({event.count - 1} more dropped for this cause, not logged)"
    # The cause is part of the format string, so `mute` counts each cause as its own kind.
    log.log(level, f"%s {event.cause}: %s%s%s", address, event.reason, hint, more)


def _close_phrase(reason: str) -> str:
    if reason.startswith("ping-restart"):
        return "Inactivity timeout (--ping-restart)"
    return reason


class ServerEventLog:
    def __init__(self, log: logging.Logger, peers: PeerRegistry, family: int,
                 *, mute_replay_warnings: bool = False) -> None:
        self.log = log
        self.mute_replay_warnings = mute_replay_warnings
        self.peers = peers
        self.family = family
        self.renegotiations = 0
        self.shutting_down = False  # set by the runtime: refusals then say nothing new
        peers.listeners.append(self._peer_changed)

    def _peer_changed(self, what: str, peer: Peer) -> None:
        if what == "arrived":
            self._connected(peer)

    def _connected(self, peer: Peer) -> None:
        self.log.info("%s Peer Connection Initiated with %s", peer.prefix,
                      format_address(peer.address, self.family))
        if peer.virtual_address is not None:
            self.log.log(VERBOSE, "%s MULTI_sva: pool returned IPv4=%s", peer.prefix,
                         peer.virtual_address)
        refusal = peer.session.auth_failed
        if refusal is not None:
            # Decided as the client's key-method 2 arrived; it hears it as AUTH_FAILED.
            self.log.warning("%s %s: sending AUTH_FAILED", peer.prefix, refusal)

    def __call__(self, event: Event, peer: Peer | None = None) -> None:
        """One event; `peer`: the registry's peer it is about (PeerRegistry.on_event)."""
        if isinstance(event, HandshakeComplete):
            if event.renegotiation:
                self.renegotiations += 1
                prefix = f"{peer.prefix} " if peer is not None else ""
                self.log.info("%sControl Channel: %s, new key_id %d (renegotiation)", prefix,
                              event.tls_version, event.key_id)
            else:
                self.log.log(VERBOSE, "Control Channel: %s, peer CN=%s", event.tls_version,
                             peer_text(event.peer_common_name or ""))
        elif isinstance(event, DataChannelReady):
            prefix = f"{peer.prefix} " if peer is not None else ""
            self.log.info("%sData Channel: cipher '%s', peer-id: %s", prefix, event.cipher,
                          "none (P_DATA_V1)" if event.data_peer_id is None
                          else event.data_peer_id)
        elif isinstance(event, SessionClosed):
            self._closed(event, peer)
        elif isinstance(event, ClientRefused):
            if not self.shutting_down:
                self.log.warning("%s:%s TLS Error: client refused: %s", event.address[0],
                                 event.address[1], event.reason)
        elif isinstance(event, PacketDropped):
            log_drop(self.log, event, format_address(event.address, self.family),
                     mute_replay_warnings=self.mute_replay_warnings)
        elif isinstance(event, Notice):
            self.log.log(logging.WARNING if event.warning else logging.INFO, "%s", event.text)
        elif isinstance(event, ControlMessageReceived):
            self.log.info("Received control message: %s", peer_text(event.text))

    def _closed(self, event: SessionClosed, peer: Peer | None) -> None:
        if peer is None:
            self.log.log(VERBOSE, "session closed before it was established: %s", event.reason)
            return
        self.log.info("%s %s, client-instance exiting", peer.prefix, _close_phrase(event.reason))


class ClientEventLog:
    def __init__(self, log: logging.Logger, family: int,
                 *, mute_replay_warnings: bool = False) -> None:
        self.log = log
        self.mute_replay_warnings = mute_replay_warnings
        self.family = family
        self.renegotiations = 0

    def __call__(self, event: Event, remote: Address) -> None:
        if isinstance(event, HandshakeComplete):
            if event.renegotiation:
                self.renegotiations += 1
                self.log.info("Control Channel: %s, new key_id %d (renegotiation)",
                              event.tls_version, event.key_id)
                return
            self.log.info("[%s] Peer Connection Initiated with %s",
                          peer_text(event.peer_common_name or "")[1:-1],
                          format_address(remote, self.family))
            self.log.log(VERBOSE, "Control Channel: %s", event.tls_version)
        elif isinstance(event, PushApplied):
            self.log.info("PUSH: Received control message: PUSH_REPLY")
            for line in describe_push(event.options):
                self.log.log(VERBOSE, "OPTIONS IMPORT: %s", line)
            for item in event.options.unknown:
                self.log.warning("Unrecognized option or missing or extra parameter(s) in "
                                 "pushed options: %s", peer_text(item))
        elif isinstance(event, DataChannelReady):
            self.log.info("Data Channel: cipher '%s', peer-id: %s", event.cipher,
                          "none (P_DATA_V1)" if event.data_peer_id is None
                          else event.data_peer_id)
        elif isinstance(event, SessionClosed):
            if event.restart:
                self.log.info("%s, restarting", _close_phrase(event.reason))
                self.log.info("SIGUSR1[soft,%s] received, process restarting",
                              "ping-restart" if event.reason.startswith("ping-restart")
                              else "connection-reset")
            else:
                self.log.log(VERBOSE, "Connection closed: %s", event.reason)
        elif isinstance(event, ControlMessageReceived):
            self.log.info("Received control message: %s", peer_text(event.text))
        elif isinstance(event, PacketDropped):
            log_drop(self.log, event, format_address(event.address, self.family),
                     mute_replay_warnings=self.mute_replay_warnings)
