"""The TUN device of a configured peer: open it, give it addresses and routes, put it away.

A server configures its device once, from `server`/`ifconfig`. A client opens its device at
start (so a missing permission fails before any packet moves) and configures it from the
server's push; the same device is kept across reconnects, and a reconnect that is pushed the
same settings leaves it untouched, as OpenVPN's "Preserving previous TUN/TAP instance" does.

Log lines follow OpenVPN 2.6's netlink wording (net_addr_v4_add, net_route_v4_add, ...), which
is what users compare against when a route is missing.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Interface,
    IPv6Network,
    ip_interface,
)
from typing import Any, TypeVar

from tunnel.config import TunnelConfig
from tunnel.io.device import DeviceError
from tunnel.io.netlink import Route, add_routes, configure_device, link_exists, remove_device
from tunnel.io.tun import TunDevice

__all__ = ["DeviceConfig", "DeviceError", "TunnelDevice", "tun_name"]

Interface = IPv4Interface | IPv6Interface
def tso_wanted() -> bool:
    """Whether the TUN reads with TSO: `TUNNEL_TSO=1` / `=0` say so; by default where the
    extension is built (its lane reads TSO devices and completes partial checksums natively,
    tunnel/io/lane.py, tunnel/_csum.c). Measured (docs/PERFORMANCE.md, 2026-12-04): TCP-1
    1.6x plain reads at 0.65x the CPU per byte, with the lane the idle ping within 7 %, UDP
    0.93x; without the extension, UDP 0.77-0.87x (each partial checksum in Python) and no
    lane, so plain reads stay the default there."""
    wanted = os.environ.get("TUNNEL_TSO")
    if wanted in ("0", "1"):
        return wanted == "1"
    return _native_checksums()


def _native_checksums() -> bool:
    try:
        from tunnel._aead import complete_partial  # noqa: F401
    except ImportError:
        return False
    return True


T = TypeVar("T")

# pyroute2's synchronous IPRoute runs an asyncio loop of its own inside each call, which fails
# in a thread whose loop is already running (ours). Netlink calls therefore run on this one
# worker thread; the caller waits for them, which is fine for rare configuration steps
# (milliseconds, at start and on a push), never on the data path.
_NETLINK = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")


def _netlink(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return _NETLINK.submit(call, *args, **kwargs).result()


def tun_name(dev: str) -> str:
    """`dev tun` lets the kernel pick tunN; any other name is used as written."""
    return "tun%d" if dev == "tun" else dev


@dataclass(frozen=True)
class DeviceConfig:
    """What is (to be) configured on the device; equal values mean nothing to do."""

    mtu: int
    addresses: tuple[Interface, ...]
    routes: tuple[Route, ...] = field(default=())


class TunnelDevice:
    """Owns the TunDevice and what was configured on it."""

    def __init__(self, cfg: TunnelConfig, log: logging.Logger, *, max_mtu: int) -> None:
        self.cfg = cfg
        self.log = log
        self.max_mtu = max_mtu  # the frame's tun-mtu: buffers are no larger
        self.tun: TunDevice | None = None
        self.queues: list[TunDevice] = []
        self.applied: DeviceConfig | None = None
        self._preexisting = False

    @property
    def name(self) -> str:
        assert self.tun is not None
        return self.tun.name

    def open(self, queues: int = 1) -> TunDevice:
        assert self.cfg.dev is not None
        wanted = tun_name(self.cfg.dev)
        # An interface that is there before us (persistent, made by `openvpn --mktun` or an
        # earlier persist-tun run) is not ours to delete.
        self._preexisting = "%" not in wanted and _netlink(link_exists, wanted)
        # TSO reads (tunnel/io/tso.py, tso_rows.py), every queue of a multi-worker server
        # too: TCP super-packets sealed in batch, partial checksums completed here.
        tso = tso_wanted()
        tun = TunDevice.open(wanted, multi_queue=queues > 1, tso=tso)
        self.tun = tun
        # More queues of the same device (a multi-worker server: one per worker).
        self.queues = [tun] + [TunDevice.open(tun.name, multi_queue=True, vnet_hdr=tun.vnet_hdr,
                                              tso=tso) for _ in range(queues - 1)]
        self.log.info("TUN/TAP device %s opened", tun.name)
        if tun.tso:
            self.log.info("TSO reads on %s: super-packets cut, checksums completed here", tun.name)
        if self._preexisting:
            # What an earlier (persist-tun) run left on it counts as configured, so that the
            # first configure() replaces what is not wanted any more instead of adding to it.
            self.applied = DeviceConfig(0, _netlink(_global_addresses, tun.name))
        if self.cfg.persist_tun:
            tun.set_persist(True)
            self.log.info("Persist state set to: ON")
        return tun

    # -- configuration ---------------------------------------------------------------------

    def configure(self, wanted: DeviceConfig, *, routes_later: bool = False) -> bool:
        """Make the device look like `wanted`; False when it already did. `routes_later`
        (route-delay): addresses and MTU now, `wanted.routes` ignored (the caller adds its
        routes with `add_routes` when the delay is over)."""
        current = self.applied
        if routes_later and current is not None:
            current = DeviceConfig(current.mtu, current.addresses, ())
        if wanted == current:
            self.log.info("Preserving previous TUN/TAP instance: %s", self.name)
            return False
        if self.applied is not None:
            _netlink(self._unconfigure, self.applied, wanted)
        name = self.name
        mtu = min(wanted.mtu, self.max_mtu)
        if mtu != wanted.mtu:
            self.log.warning(
                "tun-mtu %d is larger than this peer's buffers allow; using %d", wanted.mtu, mtu
            )
        _netlink(configure_device, name, mtu=mtu, addresses=wanted.addresses, up=True)
        self.log.info("net_iface_mtu_set: mtu %d for %s", mtu, name)
        self.log.info("net_iface_up: set %s up", name)
        for iface in wanted.addresses:
            self.log.info("net_addr_v%d_add: %s dev %s", iface.version, iface.with_prefixlen, name)
        self.applied = DeviceConfig(mtu, wanted.addresses, ())
        if not routes_later:
            self.add_routes(wanted.routes)
        return True

    def add_routes(self, routes: tuple[Route, ...]) -> None:
        """Add routes through the configured device (kept in `applied`)."""
        assert self.applied is not None
        name = self.name
        installed: list[Route] = list(self.applied.routes)
        for route in routes:
            network, gateway = route
            via = f" via {gateway}" if gateway is not None else ""
            try:
                _netlink(add_routes, name, [route])
            except DeviceError as exc:
                if exc.errno != errno.EEXIST:  # kept from before: it is there, as wanted
                    # One bad route must not take the tunnel down (OpenVPN logs and goes on).
                    self.log.error("ERROR: cannot add route %s%s: %s", network, via, exc.strerror)
                    continue
            if route not in installed:
                installed.append(route)
            self.log.info("net_route_v%d_add: %s%s dev %s", network.version, network, via, name)
        self.applied = DeviceConfig(self.applied.mtu, self.applied.addresses, tuple(installed))

    def _unconfigure(self, old: DeviceConfig, new: DeviceConfig) -> None:
        """Remove what an earlier push configured and the new one does not want.

        tunnel/io/netlink.py has no removal calls, so this speaks rtnetlink directly.
        """
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.name)[0]
            for network, gateway in set(old.routes) - set(new.routes):
                fields: dict[str, Any] = {"dst": str(network), "oif": index}
                if gateway is not None:
                    fields["gateway"] = str(gateway)
                self._quietly(NetlinkError, ipr.route, "del", **fields)
            for iface in set(old.addresses) - set(new.addresses):
                self._quietly(
                    NetlinkError, ipr.addr, "del", index=index, address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                )
                self.log.info("net_addr_v%d_del: %s dev %s", iface.version, iface, self.name)
        self.applied = None

    def _quietly(self, error: type[Exception], method: Any, *args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except error as exc:  # already gone (the kernel drops routes with their address)
            self.log.debug("netlink %s %s: %s", args, kwargs, exc)

    # -- shutdown --------------------------------------------------------------------------

    def close(self, *, keep: bool = False) -> None:
        """Put the device away. `keep` (a SIGUSR1 restart under persist-tun) leaves it
        configured for the next run; otherwise it goes, with its addresses and routes, as
        stock's do_close_tun() does at exit even under persist-tun (only a device that was
        there before us stays)."""
        tun = self.tun
        if tun is None:
            return
        name = tun.name
        if self.cfg.persist_tun and not keep and not self._preexisting:
            try:
                tun.set_persist(False)
            except DeviceError as exc:
                self.log.debug("clear persist on %s: %s", name, exc)
        for queue in self.queues or [tun]:
            queue.close()
        self.tun = None
        if (self.cfg.persist_tun and keep) or self._preexisting:
            self.log.info("Leaving TUN/TAP device %s in place (persist-tun)", name)
            return
        self.log.info("Closed TUN/TAP interface %s", name)
        # A non-persistent device disappears with its last fd; this only catches a device
        # someone else made persistent meanwhile. After dropping root it may be refused.
        try:
            _netlink(remove_device, name)
        except DeviceError as exc:
            self.log.debug("remove %s: %s", name, exc)


def _global_addresses(name: str) -> tuple[Interface, ...]:
    """The device's addresses of global scope (not the kernel's fe80:: link-local one)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)[0]
        found: list[Interface] = []
        for message in ipr.get_addr(index=index):
            if message["scope"] == 0:  # RT_SCOPE_UNIVERSE
                address = message.get_attr("IFA_ADDRESS")
                found.append(ip_interface(f"{address}/{message['prefixlen']}"))
        return tuple(found)


# -- what to configure, from the config file and from a push --------------------------------


def resolve_ipv4(host: str) -> IPv4Address:
    """A route's DNS name -> its first IPv4 address (resolved when the route is installed)."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DeviceError(errno.ENOENT, f"cannot resolve {host!r} for a route: {exc}") from None
    return IPv4Address(infos[0][4][0])


def config_routes(
    cfg: TunnelConfig, gateway: IPv4Address | None, log: logging.Logger
) -> list[Route]:
    """The `route`/`route-ipv6` lines of the config file; `gateway` is the VPN gateway."""
    routes: list[Route] = []
    for route in cfg.routes:
        where = f"{cfg.source}:route {route.network}"
        if route.network in ("net_gateway", "remote_host") or route.gateway == "net_gateway":
            continue  # not through the tun device: a client adds it (routing.net_gateway_routes)
        try:
            base = (
                gateway if route.network == "vpn_gateway" else
                route.network if isinstance(route.network, IPv4Address) else
                resolve_ipv4(route.network)
            )
            if base is None:
                raise DeviceError(errno.EINVAL, "no VPN gateway is known")
            via = route.gateway
            via_ip = (
                gateway if via in (None, "vpn_gateway") else
                via if isinstance(via, IPv4Address) else resolve_ipv4(str(via))
            )
        except DeviceError as exc:
            log.error("ERROR: %s: %s; skipped", where, exc.strerror)
            continue
        if route.metric is not None:
            log.info("%s: metric %d is not applied (routes get the kernel's default)",
                     where, route.metric)
        routes.append((IPv4Network(f"{base}/{route.netmask}", strict=False), via_ip))
    for route6 in cfg.routes_ipv6:
        routes.append((route6.network, route6.gateway))
    return routes


def server_device_config(cfg: TunnelConfig, log: logging.Logger) -> DeviceConfig:
    addresses: list[Interface] = [a for a in (cfg.ifconfig, cfg.ifconfig_ipv6) if a is not None]
    # A device route is enough on a TUN device (no link layer), so the server's own routes
    # need no gateway.
    return DeviceConfig(cfg.tun_mtu, tuple(addresses), tuple(config_routes(cfg, None, log)))


def pushed_addresses(
    ifconfig: tuple[str, str] | None, topology: str | None
) -> tuple[list[Interface], list[Route], IPv4Address | None]:
    """(addresses, extra routes, default VPN gateway) for a pushed `ifconfig A B`."""
    if ifconfig is None:
        return [], [], None
    local, second = IPv4Address(ifconfig[0]), IPv4Address(ifconfig[1])
    if topology in (None, "subnet"):
        return [IPv4Interface(f"{local}/{second}")], [], None
    if topology == "net30":
        # B is the remote end inside the same /30; on a TUN device (no link layer) giving the
        # device that /30 is equivalent to OpenVPN's point-to-point address.
        return [IPv4Interface(f"{local}/30")], [], second
    # p2p: our /32 and a host route to the remote end.
    return [IPv4Interface(f"{local}/32")], [(IPv4Network(f"{second}/32"), None)], second


def pushed_routes(
    routes: Sequence[tuple[str, str, str | None]],
    gateway: IPv4Address | None,
    log: logging.Logger,
) -> list[Route]:
    result: list[Route] = []
    for net, mask, gw in routes:
        if net in ("net_gateway", "remote_host") or gw == "net_gateway":
            log.warning("pushed route %s %s: routes via the pre-existing default gateway are "
                        "not supported; skipped", net, mask)
            continue
        base = gateway if net == "vpn_gateway" else IPv4Address(net)
        via = gateway if gw in (None, "vpn_gateway") else IPv4Address(gw)
        if base is None:
            log.warning("pushed route %s: no VPN gateway is known; skipped", net)
            continue
        result.append((IPv4Network(f"{base}/{mask}", strict=False), via))
    return result


def pushed_ipv6(
    ifconfig_ipv6: tuple[str, str | None] | None, routes_ipv6: Sequence[str]
) -> tuple[list[Interface], list[Route]]:
    if ifconfig_ipv6 is None:
        return [], []
    # The pushed IPv6 gateway is not needed: a device route is enough on TUN (no link layer).
    return [IPv6Interface(ifconfig_ipv6[0])], [(IPv6Network(net), None) for net in routes_ipv6]
