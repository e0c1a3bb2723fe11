"""Client routing as stock OpenVPN 2.6 does it on Linux (issue 11, item 6).

* `redirect-gateway [def1] [bypass-dhcp] [bypass-dns] [ipv6] [!ipv4] [local] [autolocal]
  [block-local]` (in the config and pushed: the flags add up, as stock's route flags do), as
  route.c's redirect_default_route_to_vpn() on Linux: first the route to the server through the
  pre-existing default gateway ("net gateway"; not with `local`, and with `autolocal` only when
  the server is outside the gateway's subnet); with def1 then 0.0.0.0/1 and 128.0.0.0/1
  through the VPN; without def1 the default route itself is deleted and replaced by one
  through the VPN (`DefaultRoute`), and put back at exit. `block-local` (server outside the
  gateway's subnet): a host route to the gateway through itself and the gateway's subnet, cut
  in two halves, through the VPN. `ipv6` adds ::/3, 2000::/4, 3000::/4 and fc00::/7 through
  the VPN. As in stock, without a default gateway to keep the server reachable the IPv4
  redirect is not made at all ("NOTE: unable to redirect IPv4 default gateway").
  bypass-dhcp and bypass-dns have no effect on Linux stock (get_bypass_addresses() is
  Windows-only).
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

__all__ = [
    "REDIRECT_IPV4", "REDIRECT_IPV6", "DefaultRoute", "HostRoutes", "NetGateway",
    "find_net_gateway", "gateway_subnet", "split_subnet",
]

REDIRECT_IPV4 = (ipaddress.IPv4Network("0.0.0.0/1"), ipaddress.IPv4Network("128.0.0.0/1"))
REDIRECT_IPV6 = tuple(ipaddress.IPv6Network(net)  # stock's init.c opt_list
                      for net in ("::/3", "2000::/4", "3000::/4", "fc00::/7"))


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


def gateway_subnet(gateway: ipaddress.IPv4Address) -> ipaddress.IPv4Network | None:
    """The subnet of the first up interface address that contains `gateway` (stock's
    get_default_gateway() netmask scan over SIOCGIFCONF), or None."""
    return _netlink(_gateway_subnet, gateway)


def _gateway_subnet(gateway: ipaddress.IPv4Address) -> ipaddress.IPv4Network | None:
    try:
        with IPRoute() as ipr:
            up = {link["index"] for link in ipr.get_links() if link["flags"] & 1}  # IFF_UP
            addresses = ipr.get_addr(family=2)
    except (NetlinkError, OSError):
        return None
    for addr in addresses:
        if addr["index"] not in up:
            continue
        network = ipaddress.IPv4Interface(
            f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}").network
        if gateway in network:
            return network
    return None


def split_subnet(subnet: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    """block-local's two blocking routes: the subnet cut in halves (add_block_local_item)."""
    return list(subnet.subnets(prefixlen_diff=1)) if subnet.prefixlen < 32 else []


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


class DefaultRoute:
    """redirect-gateway without def1: the pre-existing default route is deleted and one through
    the VPN takes its place; at exit the VPN's is deleted and the original added back (stock:
    del_route3(0, 0, net gateway) ... add_route3(0, 0, net gateway)). Replaced once: after a
    reconnect the saved route is still the net gateway."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.saved: NetGateway | None = None
        self.vpn_gateway: ipaddress.IPv4Address | None = None

    def replace(self, via: NetGateway, vpn_gateway: ipaddress.IPv4Address) -> None:
        self.vpn_gateway = vpn_gateway
        if self.saved is not None:
            return
        fields = {"dst": "0.0.0.0/0", "gateway": str(via.gateway), "oif": via.ifindex}
        try:
            _netlink(_route, "del", fields)
        except NetlinkError as exc:
            if exc.code != 3:  # ESRCH: already gone
                self.log.error("ERROR: cannot delete the default route via %s: %s",
                               via.gateway, exc)
                return
        self.saved = via
        self.log.info("net_route_v4_del: 0.0.0.0/0 via %s", via.gateway)

    def restore(self) -> None:
        via, self.saved = self.saved, None
        if via is None:
            return
        if self.vpn_gateway is not None:
            try:  # still there when the device is kept (persist-tun); gone with it otherwise
                _netlink(_route, "del", {"dst": "0.0.0.0/0", "gateway": str(self.vpn_gateway)})
                self.log.info("net_route_v4_del: 0.0.0.0/0 via %s", self.vpn_gateway)
            except (NetlinkError, OSError):
                pass
        try:
            _netlink(_route, "add", {"dst": "0.0.0.0/0", "gateway": str(via.gateway),
                                     "oif": via.ifindex})
            self.log.info("net_route_v4_add: 0.0.0.0/0 via %s", via.gateway)
        except (NetlinkError, OSError) as exc:
            self.log.error("ERROR: cannot restore the default route via %s: %s",
                           via.gateway, exc)


def net_gateway_routes(
    routes: list[Any], server: str, log: logging.Logger, source: str,
    via: NetGateway | None = None,
) -> list[tuple[ipaddress.IPv4Network, NetGateway]]:
    """The config's `route` lines that go through the pre-existing gateway (net_gateway as the
    gateway, or net_gateway / remote_host as the network), resolved now; a line that cannot
    be resolved is logged and skipped, as stock does."""
    wanted = [r for r in routes if r.gateway == "net_gateway"
              or r.network in ("net_gateway", "remote_host")]
    if not wanted:
        return []
    via = via or find_net_gateway()
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
