"""`tunnel client`: connect to the remotes in turn, configure the device from the push.

The device is opened at start (a missing permission fails at once, in one line) but gets its
addresses only from the server's PUSH_REPLY; the protocol `Client` reconnects by itself after
a ping-restart or a RESTART, and the same device is kept throughout. As OpenVPN does, a client
with `user`/`group` gives up root only after the first push has been applied, because
configuring the device needs it.

The client ends on a signal (exit 0), or when the server refuses it for good (AUTH_FAILED,
HALT) or `ping-exit` expires (exit 1).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any

from tunnel.app.build import build_client, build_frame, build_session_settings, profile_view
from tunnel.app.credentials import AUTH_TOKEN, load_credentials
from tunnel.app.device import (
    DeviceConfig,
    DeviceError,
    config_routes,
    pushed_addresses,
    pushed_ipv6,
    pushed_routes,
)
from tunnel.app.eventlog import ClientEventLog
from tunnel.app.link import (
    ResolvedRemote,
    client_bind_address,
    format_address,
    link_name,
    open_client_socket,
    resolve_remotes,
)
from tunnel.app.routing import (
    REDIRECT_IPV4,
    REDIRECT_IPV6,
    DefaultRoute,
    HostRoutes,
    NetGateway,
    find_net_gateway,
    gateway_subnet,
    net_gateway_routes,
    split_subnet,
)
from tunnel.app.runtime import EXIT_FAILED, Runtime, version_line
from tunnel.app.status import StatusSnapshot, drop_counts
from tunnel.io.client_link import ClientLinkDriver, RemoteLink, connect_request
from tunnel.io.driver import Driver
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.events import (
    DataChannelReady,
    Event,
    HandshakeComplete,
    PushApplied,
    SessionClosed,
)
from tunnel.protocol.messages import PushOptions
from tunnel.protocol.settings import SessionSettings
from tunnel.runtime import make_pool

__all__ = ["ClientRuntime"]

_SPECIAL_GATEWAYS = frozenset({"dhcp", "vpn_gateway", "net_gateway", "remote_host"})


def _proxy_request(remote: ResolvedRemote) -> bytes:
    proxy = remote.proxy
    if proxy is None:
        return b""
    basic = None
    if proxy.auth == "basic" and proxy.username is not None and proxy.password is not None:
        basic = (proxy.username, proxy.password)
    return connect_request(remote.host, remote.address[1], version=proxy.version,
                           agent=proxy.agent, headers=proxy.headers, basic=basic)


class ClientRuntime(Runtime):
    role = "client"

    def prepare(self, loop: asyncio.AbstractEventLoop) -> Driver | ClientLinkDriver:
        cfg = self.cfg
        self.host_routes = HostRoutes(self.log)  # redirect-gateway's route to the server
        self.default_route = DefaultRoute(self.log)  # redirect-gateway without def1
        self.cleanups.append(self.host_routes.remove_all)
        self.cleanups.append(self.default_route.restore)
        self.redirected = False
        # auth-user-pass: read (or asked on the terminal) once, before anything is opened;
        # under management-query-passwords without a file the management client answered.
        self.user_pass = self._user_pass()
        self._read_user_pass = self._nocache_source()
        remotes = resolve_remotes(cfg, self.log)
        if any(r.tcp or (r.remote is not None and r.remote.profile) for r in remotes):
            # TCP, <connection> profiles or an HTTP proxy: one link per session
            return self._prepare_links(loop, remotes)
        family = remotes[0].family
        self.family = family
        ipv6_link = family == socket.AF_INET6
        settings = self.with_peer_checks(
            self._with_credentials(build_session_settings(cfg, ipv6_link=ipv6_link)))
        frame = build_frame(cfg)
        self.device.max_mtu = frame.tun_mtu
        sock = open_client_socket(cfg, family)
        self.sock = sock
        name = link_name(family)
        if cfg.bind_local:
            host, port = sock.getsockname()[:2]
            self.log.info("%s link local (bound): %s", name, format_address((host, port), family))
        else:
            self.log.info("%s link local: (not bound)", name)
        for remote in remotes:
            self.log.info("%s link remote: %s", name, format_address(remote.address, family))
        tun = self.device.open()
        client = build_client(cfg, settings, [r.address for r in remotes], loop.time(),
                              token_store=AUTH_TOKEN)
        self.client = client
        self.endpoint = client
        self.events = ClientEventLog(
            self.log, family, mute_replay_warnings=self.cfg.mute_replay_warnings)
        self._device_ready = False
        self.pool = make_pool(frame)
        return Driver(loop, self.endpoint, sock, tun, self.pool, on_event=self.on_event,
                      log=self.log)

    def credentials_wanted(self) -> str | None:
        return "Auth" if self.cfg.auth_user_pass == "" else None

    def _user_pass(self) -> tuple[str, str] | None:
        if self.credentials is not None and self.cfg.auth_user_pass == "":
            return self.credentials.username, self.credentials.password
        loaded = load_credentials(self.cfg)
        return None if loaded is None else (loaded.username, loaded.password)

    def _nocache_source(self) -> Callable[[], tuple[str, str]] | None:
        """Under `auth-nocache`: the one place the credentials read at start wait until the
        first key-method 2 message takes them; every later call reads their source again
        (stock's get_user_pass() after purge_user_pass()). The runtime keeps no copy: a Python
        str cannot be wiped, so dropping every reference is what "not cached" can mean here."""
        if not self.cfg.auth_nocache or self.user_pass is None:
            return None
        if self.credentials is not None and self.cfg.auth_user_pass == "":
            raise ConfigError(
                f"{self.cfg.source}:{self.cfg.line_of('auth-nocache')}: auth-nocache with "
                "the password from management-query-passwords is not supported (it would have "
                "to be asked for again at every renegotiation); drop auth-nocache or use a file")
        first: list[tuple[str, str]] = [self.user_pass]
        self.user_pass = None
        self.credentials = None
        cfg = self.cfg

        def read() -> tuple[str, str]:
            if first:
                return first.pop()
            loaded = load_credentials(cfg)
            if loaded is None:
                raise ConfigError("auth-user-pass is no longer configured")
            username, password = loaded.username, loaded.password
            loaded.password = ""
            return username, password

        return read

    def _with_credentials(self, settings: SessionSettings) -> SessionSettings:
        if self._read_user_pass is not None:
            settings.auth_nocache = True
            settings.read_user_pass = self._read_user_pass
        elif self.user_pass is not None:
            settings.username, settings.password = self.user_pass
        return settings

    def _prepare_links(
        self, loop: asyncio.AbstractEventLoop, remotes: list[ResolvedRemote]
    ) -> ClientLinkDriver:
        """A profile with TCP remotes: one link per session, of its remote's transport."""
        cfg = self.cfg
        self.family = remotes[0].family
        views = [cfg if r.remote is None else profile_view(cfg, r.remote) for r in remotes]
        per_remote = [
            self.with_peer_checks(self._with_credentials(
                build_session_settings(view, ipv6_link=r.family == socket.AF_INET6, tcp=r.tcp)))
            for view, r in zip(views, remotes, strict=True)
        ]
        frame = build_frame(cfg)
        self.device.max_mtu = frame.tun_mtu
        links = [
            RemoteLink(r.tcp, r.family, client_bind_address(view, r.family),
                       proxy_address=r.proxy_address, proxy_request=_proxy_request(r))
            for view, r in zip(views, remotes, strict=True)
        ]
        tun = self.device.open()
        client = build_client(
            cfg, per_remote[0], [r.address for r in remotes], loop.time(), per_remote=per_remote,
            profiles=[r.remote for r in remotes if r.remote is not None]
            if all(r.remote is not None for r in remotes) else None,
            token_store=AUTH_TOKEN,
        )
        self.client = client
        self.endpoint = client
        self.events = ClientEventLog(self.log, self.family)
        self._device_ready = False
        self.pool = make_pool(frame)
        log = self.log

        def on_link(link: RemoteLink, addr: tuple[str, int]) -> None:
            where = format_address(addr, link.family)
            if link.proxy_address is not None:
                log.info("Attempting to establish TCP connection with %s via HTTP proxy %s",
                         f"{addr[0]}:{addr[1]}", format_address(link.proxy_address, link.family))
            elif link.tcp:
                log.info("Attempting to establish TCP connection with %s", where)
            else:
                log.info("%s link remote: %s", link_name(link.family), where)

        def on_connected(addr: tuple[str, int]) -> None:
            log.info("TCP connection established with %s",
                     format_address(addr, self.family))

        return ClientLinkDriver(
            loop, self.endpoint, client, links, tun, self.pool, queue_limit=cfg.tcp_queue_limit,
            nodelay=cfg.tcp_nodelay or cfg.socket_flags_nodelay, on_event=self.on_event,
            on_link=on_link, on_connected=on_connected, log=self.log,
        )

    def started(self) -> None:
        if self.cfg.ping_exit > 0:
            self.spawn(self._watch_ping_exit())

    # -- events ------------------------------------------------------------------------------

    _had_keys = False  # the current session reached the data channel (tls-exit)

    def on_event(self, event: Event) -> None:
        if isinstance(event, DataChannelReady):
            self._had_keys = True
        if isinstance(event, HandshakeComplete) and not event.renegotiation:
            # ipchange: the remote is authenticated on this connection (each new session,
            # so after a reconnect too, as stock's link_socket_connection_initiated)
            remote = self.client.session.remote_addr
            self.scripts.ipchange(remote, event.peer_common_name, self.recorder.env_for(remote))
        self.events(event, self.client.remote)
        self.management_event(event)
        if isinstance(event, PushApplied):
            self._device_ready = self._apply_push(event.options)
        elif isinstance(event, DataChannelReady) and self._device_ready:
            # After the push is applied, the device configured and the data keys installed:
            # the order OpenVPN logs them in (under route-delay: once the routes are in).
            self._device_ready = False
            if self._route_timer is None:
                self.log.info("Initialization Sequence Completed")
            else:
                self._init_after_routes = True
        elif (
            isinstance(event, SessionClosed)
            and self.client.finished is not None
            and not self.shutting_down
        ):
            self.log.error("Exiting: %s", self.client.finished.reason)
            self.stop(EXIT_FAILED)
        elif (
            isinstance(event, SessionClosed)
            and self.cfg.ops.tls_exit
            and not self.shutting_down
            and not self._had_keys
        ):
            # tls-exit: a failed TLS negotiation ends the process instead of a retry.
            self.log.error("Exiting due to --tls-exit: %s", event.reason)
            self.stop(EXIT_FAILED)
        if isinstance(event, SessionClosed):
            self._had_keys = False
            session = self.client.session
            if (session.auth_rejected and not session.token_rejected
                    and self.cfg.auth_retry == "interact" and not self.shutting_down):
                self._ask_again()

    def _ask_again(self) -> None:
        """auth-retry interact after AUTH_FAILED: the credentials are dropped and read again
        from their source for the next try (stock: ssl_purge_auth(), then get_user_pass()
        re-reads the file or asks on the terminal); under auth-nocache every key reads them
        anyway. From management-query-passwords they are asked for again there."""
        if self._read_user_pass is not None:
            return
        if self.credentials is not None and self.cfg.auth_user_pass == "":
            self.spawn(self._requery_management())
            return
        try:
            loaded = load_credentials(self.cfg)
        except (ConfigError, OSError) as exc:
            self.log.error("Exiting due to fatal error: auth-user-pass: %s", exc)
            self.stop(EXIT_FAILED)
            return
        if loaded is not None:
            self._set_user_pass(loaded.username, loaded.password)

    def _set_user_pass(self, username: str, password: str) -> None:
        client = self.client
        for settings in {id(s): s for s in [client.settings, *(client.per_remote or [])]
                         }.values():
            settings.username, settings.password = username, password

    async def _requery_management(self) -> None:
        """Ask the management client again (>PASSWORD:Need 'Auth'); the next session waits
        for the answer (the client is held until then)."""
        client = self.client
        client.hold = True
        try:
            answer = await self.query_credentials_again()
        finally:
            client.hold = False
        if answer is not None:
            self.credentials = answer
            self._set_user_pass(answer.username, answer.password)
        elif not self.shutting_down:
            self.stop(EXIT_FAILED)
        if self.driver is not None:
            self.driver.kick()  # re-arm the timer: the reconnect may be due

    def _apply_push(self, options: PushOptions) -> bool:
        """Configure the device from the push; False (and the exit begun) if it failed."""
        cfg = self.cfg
        if options.ifconfig is None:
            self.log.warning("the server pushed no 'ifconfig': the device gets no IPv4 address")
        addresses, extra, default_gateway = pushed_addresses(options.ifconfig, options.topology)
        gateway = default_gateway
        if options.route_gateway is not None and options.route_gateway not in _SPECIAL_GATEWAYS:
            gateway = IPv4Address(options.route_gateway)
        addresses6, _ = pushed_ipv6(options.ifconfig_ipv6, options.routes_ipv6)
        nopull = cfg.ops.route_nopull  # pushed routes, redirect-gateway, dhcp-options ignored
        dhcp = [] if nopull else options.dhcp_options
        if options.dns and not nopull:
            self.log.info("pushed DNS servers %s are not applied (no resolver integration; an "
                          "up script gets them as foreign_option_N)", ", ".join(options.dns))
        delay = cfg.ops.route_delay
        if self._route_timer is not None:  # a reconnect before the last delay was over
            self._route_timer.cancel()
            self._route_timer = None
        routes = [] if delay is not None else self._routes(options, extra, gateway, nopull)
        wanted = DeviceConfig(
            options.tun_mtu or cfg.tun_mtu, tuple([*addresses, *addresses6]),
            () if cfg.ops.route_noexec else tuple(routes),
        )
        try:
            configured = self.device.configure(wanted, routes_later=delay is not None)
            wants_up = configured or cfg.ops.up_restart  # stock: up once, unless up-restart
            env = self._up_env(options, addresses, dhcp)
            if wants_up and not self._run_up_script(env):
                return False
            if delay is None:
                if wants_up:
                    self._run_route_up(env, options, gateway)
                self.drop_privileges()
            else:
                # route-delay N: routes (and route-up) N seconds after the device is up; the
                # initialization completes (and privileges go) only then, as in stock.
                assert self.loop is not None
                self._init_after_routes = False
                self._route_timer = self.loop.call_later(
                    delay[0], self._delayed_routes, options, extra, gateway, nopull, env,
                    wants_up)
        except (DeviceError, OSError) as exc:
            self.log.error("cannot configure %s from the push: %s", self.device.name,
                           exc.strerror or exc)
            self.log.error("Exiting due to fatal error")
            self.stop(EXIT_FAILED)
            return False
        return True

    _route_timer: asyncio.TimerHandle | None = None
    _init_after_routes = False

    def _routes(self, options: PushOptions, extra: list[Any], gateway: IPv4Address | None,
                nopull: bool) -> list[Any]:
        """The routes through the device; routes outside it (the server's host route,
        net_gateway routes, a replaced default route) are added here and now."""
        cfg = self.cfg
        _, routes6 = pushed_ipv6(options.ifconfig_ipv6, options.routes_ipv6)
        pushed = [] if nopull else pushed_routes(options.routes, gateway, self.log)
        routes = [
            *extra,
            *pushed,
            *([] if nopull else routes6),
            *config_routes(cfg, gateway, self.log),
            *([] if cfg.ops.route_noexec else self._redirect_routes(options, gateway, nopull)),
        ]
        if not cfg.ops.route_noexec:
            server = self.client.session.remote_addr[0]
            for network, via in net_gateway_routes(cfg.routes, server, self.log, cfg.source,
                                                   self._net_gateway()):
                self.host_routes.add(network, via)
        else:
            self.log.info("route-noexec: %d route(s) left to the scripts", len(routes))
        return routes

    def _delayed_routes(self, options: PushOptions, extra: list[Any],
                        gateway: IPv4Address | None, nopull: bool, env: dict[str, str],
                        wants_up: bool) -> None:
        self._route_timer = None
        if self.shutting_down:
            return
        try:
            routes = self._routes(options, extra, gateway, nopull)
            if not self.cfg.ops.route_noexec:
                self.device.add_routes(tuple(routes))
            if wants_up:
                self._run_route_up(env, options, gateway)
            self.drop_privileges()
        except (DeviceError, OSError) as exc:
            self.log.error("cannot add the routes: %s", exc.strerror or exc)
        if self._init_after_routes:
            self._init_after_routes = False
            self.log.info("Initialization Sequence Completed")

    def _redirect_routes(
        self, options: PushOptions, gateway: IPv4Address | None, nopull: bool
    ) -> list[tuple[IPv4Network | IPv6Network, IPv4Address | None]]:
        """redirect-gateway (routing.py): the server's host route, block-local's routes, and the
        def1 pair or the replaced default route; `ipv6` adds the IPv6 ones."""
        configured = self.cfg.ops.redirect_gateway
        pushed = options.redirect_gateway and not nopull
        self.redirected = False
        if configured is None and not pushed:
            return []
        # Stock ORs a pushed redirect-gateway's flags into the configured ones.
        flags = {*(configured or ()), *(options.redirect_gateway_flags if pushed else ())}
        routes: list[tuple[IPv4Network | IPv6Network, IPv4Address | None]] = []
        if "!ipv4" not in flags:
            routes.extend(self._redirect_ipv4(flags, gateway))
        if "ipv6" in flags:
            routes.extend((network, None) for network in REDIRECT_IPV6)
        return routes

    def _net_gateway(self) -> NetGateway | None:
        """The pre-existing default gateway: the one redirect-gateway replaced, if it did."""
        return self.default_route.saved or find_net_gateway()

    def _redirect_ipv4(
        self, flags: set[str], gateway: IPv4Address | None
    ) -> list[tuple[IPv4Network | IPv6Network, IPv4Address | None]]:
        net_gateway = self._net_gateway()
        server = self.client.session.remote_addr[0]
        local = "local" in flags
        if gateway is None:
            self.log.warning("NOTE: unable to redirect IPv4 default gateway -- VPN gateway "
                             "parameter (--route-gateway or --ifconfig) is missing")
            return []
        if net_gateway is None and not local:
            self.log.warning("NOTE: unable to redirect IPv4 default gateway -- Cannot read "
                             "current default gateway from system")
            return []
        routes: list[tuple[IPv4Network | IPv6Network, IPv4Address | None]] = []
        if net_gateway is not None:
            subnet = gateway_subnet(net_gateway.gateway)
            server_local = (subnet is not None and ":" not in server
                            and IPv4Address(server) in subnet)
            if "autolocal" in flags and subnet is not None:
                local = server_local
            if not local and ":" not in server:
                self.host_routes.add(IPv4Network(f"{server}/32"), net_gateway)
            if "block-local" in flags and subnet is not None and not server_local:
                # the gateway itself stays reachable; the rest of its subnet goes to the VPN
                self.host_routes.add(IPv4Network(f"{net_gateway.gateway}/32"), net_gateway)
                routes.extend((half, gateway) for half in split_subnet(subnet))
        if "def1" in flags:
            routes.extend((network, gateway) for network in REDIRECT_IPV4)
        else:
            if net_gateway is not None:
                self.default_route.replace(net_gateway, gateway)
            routes.append((IPv4Network("0.0.0.0/0"), gateway))
        self.redirected = True
        return routes

    def _up_env(self, options: PushOptions, addresses: list[Any], dhcp: list[str]
                ) -> dict[str, str]:
        """The variables of up (and, with the route ones added, route-up)."""
        local = addresses[0] if addresses else None
        env = self.scripts.device_env(
            self.device.name or "", options.tun_mtu or self.cfg.tun_mtu,
            str(local.ip) if local is not None else "",
            str(local.netmask) if local is not None else "", self.scripts.context)
        remote = self.client.session.remote_addr
        env.update(self.recorder.env_for(remote))
        env["trusted_ip"], env["trusted_port"] = remote[0], str(remote[1])
        for index, item in enumerate(dhcp, 1):
            env[f"foreign_option_{index}"] = item
        return env

    def _run_up_script(self, env: dict[str, str]) -> bool:
        """up with stock's variables; False (exit begun) if it failed."""
        if not self.cfg.ops.scripts:
            return True
        if not self.run_up(env):
            self.log.error("Exiting due to fatal error (up script failed)")
            self.stop(EXIT_FAILED)
            return False
        return True

    def _run_route_up(self, env: dict[str, str], options: PushOptions,
                      gateway: IPv4Address | None) -> None:
        if not self.cfg.ops.scripts:
            return
        route_env = {**env, "redirect_gateway": "1" if self.redirected else "0"}
        if gateway is not None and (options.routes or self.redirected):
            route_env["route_vpn_gateway"] = str(gateway)
        net_gateway = self._net_gateway()
        if net_gateway is not None:
            route_env["route_net_gateway"] = str(net_gateway.gateway)
        for index, (net, mask, via) in enumerate(options.routes, 1):
            route_env[f"route_network_{index}"] = net
            route_env[f"route_netmask_{index}"] = mask
            route_env[f"route_gateway_{index}"] = via or (str(gateway) if gateway else "")
        self.scripts.route_up(route_env)

    async def _watch_ping_exit(self) -> None:
        assert self.loop is not None
        limit = float(self.cfg.ping_exit)
        while True:
            silent = self.loop.time() - self.client.session.last_rx
            if silent >= limit:
                self.log.info("Inactivity timeout (--ping-exit), exiting")
                self.stop(EXIT_FAILED)
                return
            await asyncio.sleep(max(0.5, limit - silent))

    # -- status --------------------------------------------------------------------------------

    def status_snapshot(self, now: float) -> StatusSnapshot:
        assert self.driver is not None
        return StatusSnapshot(
            title=version_line(),
            now=self.wall(now),
            traffic=self.client.traffic,
            pool=self.pool.stats,
            arena=self.arena_counters(),
            link=self.driver.stats,
            runs=self.driver.runs.stats,
            run_block=self.driver.runs.block_size,
            drops=drop_counts(self.client.drops.counts, self.driver.stats,
                              getattr(self.driver, "device", None)),
        )
