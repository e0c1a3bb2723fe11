"""The running tunnel as the management interface sees it (ManagementHost), per role.

It also turns the protocol's events into stock's state changes and client notifications:

    client: CONNECTING, WAIT, AUTH, GET_CONFIG, ASSIGN_IP, ADD_ROUTES, CONNECTED, RECONNECTING,
            EXITING (the order a stock client reports them in)
    server: CONNECTING, ASSIGN_IP, CONNECTED; >CLIENT:ESTABLISHED/DISCONNECT per client
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from tunnel.app.ccd import parse_client_config
from tunnel.app.connect import ClientRuntime
from tunnel.app.management.host import AuthDecision, ByteCount, Unsupported
from tunnel.app.management.server import Management
from tunnel.app.runtime import Runtime
from tunnel.app.serve import ServerRuntime
from tunnel.app.status import render_status
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.events import (
    AuthRequested,
    DataChannelReady,
    Event,
    HandshakeComplete,
    PushApplied,
    SessionClosed,
)

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from tunnel.app.peers import Peer
    from tunnel.config import TunnelConfig

__all__ = ["ClientHost", "RuntimeHost", "ServerHost", "host_for"]


class RuntimeHost:
    role: Literal["server", "client"]

    def __init__(self, runtime: Runtime, management: Management) -> None:
        self.runtime = runtime
        self.management = management
        self._up = False

    def _now(self) -> float:
        assert self.runtime.loop is not None
        return self.runtime.loop.time()

    def status_text(self, version: int) -> str:
        snapshot = self.runtime.status_snapshot(self._now())
        return render_status(snapshot, version, extras=False)

    def load_stats(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def bytecounts(self) -> list[ByteCount]:
        raise NotImplementedError

    def throw_signal(self, signum: int) -> None:
        # The same path as a signal from outside: the runtime's handlers decide.
        os.kill(os.getpid(), signum)

    def kill_by_common_name(self, name: str) -> int:
        raise Unsupported

    def kill_by_address(self, ip: str, port: int) -> int:
        raise Unsupported

    def client_kill(self, client_id: int, message: str) -> bool:
        raise Unsupported

    def client_auth(self, decision: AuthDecision) -> bool:
        raise Unsupported

    # -- notifications from the runtime -------------------------------------------------------

    def on_event(self, event: Event) -> None:
        pass

    def started(self) -> None:
        pass

    def exiting(self, restart: str | None) -> None:
        """Shutting down: RECONNECTING,SIGUSR1|SIGHUP before a restart, else EXITING."""
        self.updown("DOWN", "down")
        if restart is not None:
            self.management.state("RECONNECTING", restart)
        else:
            self.management.state("EXITING", "SIGTERM")

    def updown(self, what: str, script_type: str, local_ip: str = "") -> None:
        """management-up-down: >UPDOWN:UP|DOWN and the env an up/down script would get."""
        if not self.management.options.up_down or (what == "DOWN" and not self._up):
            return
        self._up = what == "UP"
        r = self.runtime
        env = [("dev", r.device.name), ("dev_type", "tun"), ("tun_mtu", str(r.cfg.tun_mtu)),
               ("script_type", script_type)]
        if local_ip:
            env.append(("ifconfig_local", local_ip))
        self.management.broadcast(f">UPDOWN:{what}",
                                  *(f">UPDOWN:ENV,{k}={_clean(v)}" for k, v in env),
                                  ">UPDOWN:ENV,END")



def announce_server_up(
    m: Management, cfg: TunnelConfig, sock: socket.socket | None,
    assigned: Callable[[str], None] | None = None,
) -> None:
    """A server is up (one process, or the workers' supervisor once every worker runs): the
    states stock reports, CONNECTING, ASSIGN_IP (its own tunnel address, if any), CONNECTED.
    `assigned(local_ip)` runs between the last two (management-up-down's >UPDOWN:UP)."""
    m.state("CONNECTING")
    local_ip = str(cfg.ifconfig.ip) if cfg.ifconfig is not None else ""
    if local_ip:
        m.state("ASSIGN_IP", local_ip=local_ip)
    if assigned is not None:
        assigned(local_ip)
    local = None
    if sock is not None:
        host, port = sock.getsockname()[:2]
        local = (host, port)
    m.state("CONNECTED", "SUCCESS", local_ip=local_ip, local=local)

class ClientHost(RuntimeHost):
    role = "client"

    def __init__(self, runtime: ClientRuntime, management: Management) -> None:
        super().__init__(runtime, management)
        self.client_runtime = runtime
        self._local_ip = ""
        self._pushed = False

    def load_stats(self) -> tuple[int, int, int]:
        totals = self.client_runtime.client.traffic
        return 0, totals.link_rx, totals.link_tx

    def bytecounts(self) -> list[ByteCount]:
        totals = self.client_runtime.client.traffic
        return [ByteCount(None, totals.link_rx, totals.link_tx)]

    def started(self) -> None:
        self.management.state("CONNECTING")
        self.management.state("WAIT")

    def on_event(self, event: Event) -> None:
        m = self.management
        if isinstance(event, HandshakeComplete) and not event.renegotiation:
            m.state("AUTH")
        elif isinstance(event, PushApplied):
            ifconfig = event.options.ifconfig
            self._local_ip = ifconfig[0] if ifconfig is not None else ""
            m.state("ASSIGN_IP", local_ip=self._local_ip)
            self.updown("UP", "up", self._local_ip)
            if event.options.routes or event.options.routes_ipv6:
                m.state("ADD_ROUTES")
            self._pushed = True
        elif isinstance(event, DataChannelReady) and self._pushed:
            self._pushed = False
            m.state("CONNECTED", "SUCCESS", local_ip=self._local_ip,
                    remote=self.client_runtime.client.remote)
        elif (isinstance(event, SessionClosed) and "AUTH_FAILED" in event.reason
              and self.runtime.credentials is not None):
            # management-query-passwords: the GUI learns its credentials were refused
            self.management.passwords.failed("Auth", event.reason.partition("AUTH_FAILED,")[2]
                                             or None)
        elif isinstance(event, SessionClosed) and event.restart:
            m.state("RECONNECTING", "ping-restart" if event.reason.startswith("ping-restart")
                    else "connection-reset")
            m.state("CONNECTING")
            m.state("WAIT")


class ServerHost(RuntimeHost):
    role = "server"

    def __init__(self, runtime: ServerRuntime, management: Management) -> None:
        super().__init__(runtime, management)
        self.server_runtime = runtime
        self._established: set[int] = set()  # client ids announced >CLIENT:ESTABLISHED
        self._connected: set[int] = set()  # client ids announced >CLIENT:CONNECT
        runtime.peers.listeners.append(self._peer_changed)

    def load_stats(self) -> tuple[int, int, int]:
        r = self.server_runtime
        totals = r.server.traffic
        return len(r.peers.peers), totals.link_rx, totals.link_tx

    def bytecounts(self) -> list[ByteCount]:
        return [ByteCount(peer.client_id, peer.traffic.link_rx, peer.traffic.link_tx)
                for peer in self.server_runtime.peers.in_order()]

    def _kill(self, peers: list[Peer], message: str | None, reason: str) -> int:
        r = self.server_runtime
        for peer in peers:
            r.server.kill(peer.session, message, reason, self._now())
        if peers:
            self._kick()
        return len(peers)

    def kill_by_common_name(self, name: str) -> int:
        found = self.server_runtime.peers.named(name)
        return self._kill(found, None, "killed by the management interface")

    def kill_by_address(self, ip: str, port: int) -> int:
        r = self.server_runtime
        entry = r.server.peer_at((ip, port))
        peer = r.peers.by_peer_id(entry.peer_id) if entry is not None else None
        return self._kill([peer] if peer is not None else [], None,
                          "killed by the management interface")

    def client_kill(self, client_id: int, message: str) -> bool:
        peer = self.server_runtime.peers.by_client_id(client_id)
        return self._kill([peer] if peer is not None else [], message,
                          f"client-kill: {message}") > 0

    def _kick(self) -> None:
        # After the command's reply is written: stock also answers first and acts on its
        # next turn of the event loop, so the notifications this causes come after it.
        r = self.server_runtime
        if r.loop is not None and r.driver is not None:
            r.loop.call_soon(r.driver.kick)

    def client_auth(self, decision: AuthDecision) -> bool:
        r = self.server_runtime
        peer = r.peers.by_client_id(decision.client_id)
        if peer is None:
            return False
        config = None
        if decision.config:
            # As stock: the body is the client's config, like a client-connect/ccd file.
            try:
                config = parse_client_config("\n".join(decision.config) + "\n",
                                             f"client-auth {decision.client_id}")
            except (ValueError, ConfigError) as exc:
                r.log.warning("%s client-auth: %s", peer.prefix, exc)
                return False
        done = r.server.authorize(peer.session, decision.key_id, decision.approve,
                                           decision.reason, decision.client_reason,
                                           self._now(), config)
        if done and not decision.approve:
            r.log.info("%s MULTI: connection rejected: %s, CLI:%s", peer.prefix,
                       decision.reason, decision.client_reason or "[NULL]")
        if done:
            self._kick()
        return done

    def started(self) -> None:
        r = self.server_runtime
        announce_server_up(self.management, r.cfg, r.sock,
                           lambda local_ip: self.updown("UP", "up", local_ip))

    def on_event(self, event: Event) -> None:
        r = self.server_runtime
        if isinstance(event, AuthRequested):
            peer = r.peers.by_peer_id(event.peer_id)
            if peer is None:
                return
            self._connected.add(peer.client_id)
            mode = "REAUTH" if event.reauth else "CONNECT"
            extra = [("username", event.username), ("password", event.password)]
            self.management.broadcast(
                f">CLIENT:{mode},{peer.client_id},{event.auth_id}",
                *client_env(peer, len(r.peers.peers), [(k, v) for k, v in extra if v]))
        elif isinstance(event, DataChannelReady):
            # ESTABLISHED once the client's data channel runs (after client-auth, if asked)
            peer = r.peers.by_peer_id(event.peer_id)
            if peer is None or peer.client_id in self._established:
                return
            self._established.add(peer.client_id)
            if peer.client_id in self._connected and peer.virtual_address:
                self.management.broadcast(
                    f">CLIENT:ADDRESS,{peer.client_id},{peer.virtual_address},1")
            self.management.broadcast(f">CLIENT:ESTABLISHED,{peer.client_id}",
                                      *client_env(peer, len(r.peers.peers)))

    def _peer_changed(self, what: str, peer: Peer) -> None:
        if what != "left":
            return
        self._established.discard(peer.client_id)
        # As stock: only a client announced with >CLIENT:CONNECT gets a DISCONNECT.
        if peer.client_id in self._connected:
            self._connected.discard(peer.client_id)
            self.management.broadcast(f">CLIENT:DISCONNECT,{peer.client_id}",
                                      *client_env(peer, None))


def client_env(peer: Peer, n_clients: int | None,
               credentials: list[tuple[str, str | None]] | None = None) -> list[str]:
    """A >CLIENT:ENV block: the variables stock sets for a client, then ENV,END."""
    env: list[tuple[str, object]] = []
    if n_clients is not None:
        env.append(("n_clients", n_clients))
    env += credentials or []
    env += [("common_name", peer.common_name), ("untrusted_ip", peer.address[0]),
            ("untrusted_port", peer.address[1]), ("trusted_ip", peer.address[0]),
            ("trusted_port", peer.address[1])]
    if peer.virtual_address:
        env.append(("ifconfig_pool_remote_ip", peer.virtual_address))
    for name, value in sorted(peer.session.peer_info.items()):
        env.append((name, value))
    lines = [f">CLIENT:ENV,{_clean(name)}={_clean(str(value))}" for name, value in env]
    return [*lines, ">CLIENT:ENV,END"]


def _clean(text: str) -> str:
    # A peer's text must not add lines to the management stream.
    return "".join(ch if ch.isprintable() else "_" for ch in text[:256])


def host_for(runtime: Runtime, management: Management) -> RuntimeHost:
    """The runtime's `host_factory` (run.py hands it in: this module imports the role halves,
    which therefore never import it)."""
    if isinstance(runtime, ServerRuntime):
        return ServerHost(runtime, management)
    assert isinstance(runtime, ClientRuntime)
    return ClientHost(runtime, management)
