"""`tunnel server`: one UDP socket, one TUN device, many clients.

Order of the privileged steps: the protocol settings first (a bad certificate fails before
anything is opened), then the socket (a port in use fails before a device exists), then the
device with the server's own address. Privileges are dropped as soon as both are open; the
server never needs them again, since clients only change its routing table of sessions.
"""

from __future__ import annotations

import asyncio
import gc
import socket

from tunnel.app.auth_verify import AuthVerifier
from tunnel.app.build import (
    build_frame,
    build_server,
    build_server_settings,
    build_session_settings,
)
from tunnel.app.ccd import CcdReader, PoolPersistFile, load_pool_persist
from tunnel.app.device import server_device_config
from tunnel.app.eventlog import ServerEventLog
from tunnel.app.hooks import ServerHooks
from tunnel.app.link import format_address, link_name, open_server_socket
from tunnel.app.peers import PeerRegistry
from tunnel.app.runtime import Runtime, StartupError, version_line
from tunnel.app.status import ClientRow, StatusSnapshot, drop_counts, memory_row
from tunnel.config.model import is_tcp
from tunnel.io.driver import Driver
from tunnel.io.tcp_server import TcpServerDriver
from tunnel.io.tun import TunDevice
from tunnel.protocol.events import AuthRequested, Event
from tunnel.protocol.server import ServerSettings
from tunnel.runtime import make_pool

__all__ = ["ServerRuntime", "freeze_startup_heap"]


def freeze_startup_heap() -> None:
    """Called once the server runs (one process, or each worker). What start-up built
    (modules, the TLS context, pools: ~50k objects) lives as long as the process: out of the
    collector's sight, each full collection walks only what the clients added (a full
    collection of the start-up heap alone costs ~30 ms). After a SIGHUP restart the previous
    run's frozen objects are unfrozen first, so what of them is garbage now is collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ServerRuntime(Runtime):
    role = "server"
    cookie_key: bytes | None = None  # None: the server draws its own (a worker's is shared)

    def prepare(self, loop: asyncio.AbstractEventLoop) -> Driver | TcpServerDriver:
        cfg = self.cfg
        frame = build_frame(cfg)
        self.device.max_mtu = frame.tun_mtu
        sock = self.open_link()
        self.sock = sock
        family = sock.family
        ipv6_link = family == socket.AF_INET6
        settings = build_server_settings(
            cfg, self.with_peer_checks(build_session_settings(cfg, ipv6_link=ipv6_link)))
        settings = self.adapt_settings(settings)
        self._server_operations(settings)
        host, port = sock.getsockname()[:2]
        tcp = is_tcp(cfg.proto)
        self.log.info("%s link local (bound): %s", link_name(family, tcp),
                      format_address((host, port), family))
        tun = self.open_device()
        server = build_server(cfg, settings, loop.time(), self.cookie_key)
        self.auth_verifier: AuthVerifier | None = None
        if cfg.auth_user_pass_verify is not None:
            command, method = cfg.auth_user_pass_verify
            self.auth_verifier = AuthVerifier(
                command=command, method=method, script_security=cfg.script_security,
                server=server, loop=loop, log=self.log, kick=self._kick_driver,
                timeout=float(cfg.hand_window))
        self.server = server
        self.endpoint = server
        self.peers = PeerRegistry(server)
        self.events = ServerEventLog(
            self.log, self.peers, family, mute_replay_warnings=self.cfg.mute_replay_warnings)
        self.pool = make_pool(frame)
        if tcp:
            self.log.info("Listening for incoming TCP connection on %s",
                          format_address((host, port), family))
            return TcpServerDriver(
                loop, server, server, sock, tun, self.pool,
                max_connections=cfg.max_clients, hand_window=float(cfg.hand_window),
                queue_limit=cfg.tcp_queue_limit,
                nodelay=cfg.tcp_nodelay or cfg.socket_flags_nodelay, on_event=self.on_event,
                log=self.log,
            )
        return Driver(loop, self.endpoint, sock, tun, self.pool, on_event=self.on_event,
                      log=self.log)

    # -- what a worker of a multi-worker server (worker.py) does differently ----------------

    def open_link(self) -> socket.socket:
        return open_server_socket(self.cfg)

    def open_device(self) -> TunDevice:
        tun = self.device.open()
        self.device.configure(server_device_config(self.cfg, self.log))
        self._run_up()
        return tun

    def adapt_settings(self, settings: ServerSettings) -> ServerSettings:
        return settings

    def _server_operations(self, settings: ServerSettings) -> None:
        """client-config-dir and ifconfig-pool-persist (ccd.py), before the server exists."""
        ops = self.cfg.ops
        ccd = None
        if ops.client_config_dir is not None:
            ccd = CcdReader(ops.client_config_dir, ops.ccd_exclusive, self.log)
        hooks = ServerHooks(self.scripts, self.recorder, ccd, settings.pool, settings.netmask,
                            self.log)
        if ccd is not None or "client-connect" in ops.scripts:
            settings.client_config = hooks.client_config
        if {"learn-address", "client-disconnect"} & set(ops.scripts):
            settings.on_client_connected = hooks.on_client_connected
            settings.on_client_gone = hooks.on_client_gone
        self.persist: PoolPersistFile | None = None
        if ops.ifconfig_pool_persist is not None:
            taken = load_pool_persist(ops.ifconfig_pool_persist, settings.pool, self.log)
            if taken:
                self.log.info("ifconfig-pool-persist: %d address(es) from %s", taken,
                              ops.ifconfig_pool_persist)
            if ops.ifconfig_pool_persist_seconds > 0:
                self.persist = PoolPersistFile(ops.ifconfig_pool_persist)
        self.pool_settings = settings

    def _run_up(self) -> None:
        cfg = self.cfg
        if not ({"up", "route-up"} & set(cfg.ops.scripts)) or cfg.ifconfig is None:
            return
        env = self.scripts.device_env(self.device.name, cfg.tun_mtu, str(cfg.ifconfig.ip),
                                      str(cfg.ifconfig.netmask), self.scripts.context)
        if not self.run_up(env):
            raise StartupError("the up script failed")
        self.scripts.route_up({**env, "redirect_gateway": "0"})  # stock: after the routes

    async def _persist_loop(self) -> None:
        assert self.persist is not None
        try:
            while True:
                await asyncio.sleep(self.cfg.ops.ifconfig_pool_persist_seconds)
                self.persist.write(self.pool_settings.pool)
        finally:  # also at shutdown, when this task is cancelled
            try:
                self.persist.write(self.pool_settings.pool)
            except OSError as exc:
                self.log.warning("ifconfig-pool-persist: cannot write %s: %s",
                                 self.persist.path, exc.strerror or exc)

    def started(self) -> None:
        self.drop_privileges()
        if self.persist is not None:
            self.spawn(self._persist_loop())
        freeze_startup_heap()
        self.log.info("Initialization Sequence Completed")

    def _kick_driver(self) -> None:
        if self.driver is not None:
            self.driver.kick()  # AUTH_FAILED or the push reply, queued outside a callback

    def on_event(self, event: Event) -> None:
        if self.auth_verifier is not None and isinstance(event, AuthRequested):
            self.auth_verifier.request(event)
        peer = self.peers.on_event(event)  # first: the log and management see the table after it
        self.events.shutting_down = self.shutting_down
        self.events(event, peer)
        self.management_event(event)

    def status_snapshot(self, now: float) -> StatusSnapshot:
        assert self.driver is not None and self.loop is not None
        rows = []
        for peer in self.peers.in_order():
            session = peer.session
            traffic = peer.traffic
            rows.append(ClientRow(
                common_name=peer.common_name,
                real_address=f"{peer.address[0]}:{peer.address[1]}",
                virtual_address=peer.virtual_address or "",
                bytes_received=traffic.link_rx,
                bytes_sent=traffic.link_tx,
                connected_since=peer.connected_since,
                client_id=peer.client_id,
                peer_id=session.peer_id,
                cipher=session.cipher or "",
                last_ref=self.wall(session.last_rx),
            ))
        return StatusSnapshot(
            title=self._title(),
            now=self.wall(now),
            traffic=self.server.traffic,
            pool=self.pool.stats,
            arena=self.arena_counters(),
            link=self.driver.stats,
            runs=self.driver.runs.stats,
            run_block=self.driver.runs.block_size,
            memory=[memory_row(peer.common_name, peer.address, peer.session.peer_id,
                               peer.session.memory)
                    for peer in sorted(self.peers.peers.values(), key=lambda p: p.client_id)],
            clients=rows,
            drops=drop_counts(self.server.drops.counts, self.driver.stats,
                              getattr(self.driver, "device", None)),
        )

    @staticmethod
    def _title() -> str:
        return version_line()
