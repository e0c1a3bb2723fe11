"""Client routing as stock OpenVPN 2.6 does it on Linux (issue 11, item 6).

* `redirect-gateway [def1] [bypass-dhcp] [ipv6] [!ipv4] [local] [block-local]` (in the config
  or pushed): first the route to the server through the pre-existing default gateway ("net
  gateway", unless `local`), then 0.0.0.0/1 and 128.0.0.0/1 through the VPN (always the def1
  pair: without def1 stock replaces the default route, which routes the same packets the same
  way); `ipv6` adds 2000::/4, 3000::/4 and fc00::/7 through the VPN. As in stock, without a
  default gateway to keep the server reachable the IPv4 redirect is not made at all ("NOTE:
  unable to redirect IPv4 default gateway"). bypass-dhcp and block-local have no effect on
  Linux stock either.
* `route ... net_gateway` / `route net_gateway`: through the pre-existing default gateway.
* The host route to the server is removed again when the tunnel stops.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from tunnel.app.device import _netlink  # pyroute2's sync API off the event loop's thread

__all__ = ["REDIRECT_IPV4", "REDIRECT_IPV6", "HostRoutes", "NetGateway", "find_net_gateway"]

REDIRECT_IPV4 = (ipaddress.IPv4Network("0.0.0.0/1"), ipaddress.IPv4Network("128.0.0.0/1"))
REDIRECT_IPV6 = (ipaddress.IPv6Network("2000::/4"), ipaddress.IPv6Network("3000::/4"),
                 ipaddress.IPv6Network("fc00::/7"))


@dataclass(frozen=True)
class NetGateway:
    """The pre-existing IPv4 default route: its gateway and interface index."""

    gateway: ipaddress.IPv4Address
    ifindex: int


def find_net_gateway() -> NetGateway | None:
    """The default IPv4 gateway (stock's get_default_gateway()), or None when there is none."""
    return _netlink(_find_net_gateway)


def _find_net_gateway() -> NetGateway | None:
    try:
        with IPRoute() as ipr:
            routes = ipr.get_default_routes(family=2)
    except (NetlinkError, OSError):
        return None
    for route in routes:
        gateway = route.get_attr("RTA_GATEWAY")
        ifindex = route.get_attr("RTA_OIF")
        if gateway and ifindex:
            return NetGateway(ipaddress.IPv4Address(gateway), int(ifindex))
    return None


def _route(command: str, fields: dict[str, Any]) -> None:
    with IPRoute() as ipr:
        ipr.route(command, **fields)


class HostRoutes:
    """Routes outside the tun device (via the net gateway); removed by `remove_all`."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.added: list[dict[str, Any]] = []

    def add(self, network: ipaddress.IPv4Network, via: NetGateway) -> bool:
        fields: dict[str, Any] = {"dst": str(network), "gateway": str(via.gateway),
                                  "oif": via.ifindex}
        try:
            _netlink(_route, "add", fields)
        except NetlinkError as exc:
            if exc.code != 17:  # EEXIST: already there, as wanted (not ours to remove)
                self.log.error("ERROR: cannot add route %s via %s: %s", network, via.gateway, exc)
                return False
            return True
        self.log.info("net_route_v4_add: %s via %s", network, via.gateway)
        self.added.append(fields)
        return True

    def remove_all(self) -> None:
        while self.added:
            fields = self.added.pop()
            try:
                _netlink(_route, "del", fields)
                self.log.info("net_route_v4_del: %s via %s", fields["dst"], fields["gateway"])
            except (NetlinkError, OSError) as exc:
                self.log.warning("cannot remove route %s: %s", fields["dst"], exc)


def net_gateway_routes(
    routes: list[Any], server: str, log: logging.Logger, source: str
) -> list[tuple[ipaddress.IPv4Network, NetGateway]]:
    """The config's `route` lines that go through the pre-existing gateway (net_gateway as the
    gateway, or net_gateway / remote_host as the network), resolved now; a line that cannot
    be resolved is logged and skipped, as stock does."""
    wanted = [r for r in routes if r.gateway == "net_gateway"
              or r.network in ("net_gateway", "remote_host")]
    if not wanted:
        return []
    via = find_net_gateway()
    out = []
    for route in wanted:
        where = f"{source}:route {route.network}"
        if via is None:
            log.warning("%s: no pre-existing default gateway (net_gateway); skipped", where)
            continue
        if route.network == "remote_host":
            base = server
        elif route.network == "net_gateway":
            base = str(via.gateway)
        else:
            base = str(route.network)
        try:
            network = ipaddress.IPv4Network(f"{base}/{route.netmask}", strict=False)
        except ValueError:
            log.error("ERROR: %s: %r is not an IPv4 address; skipped", where, base)
            continue
        if route.gateway not in (None, "net_gateway", "vpn_gateway"):
            log.warning("%s: only net_gateway is used as the gateway here", where)
        out.append((network, via))
    return out
