"""Network-device configuration through rtnetlink (pyroute2), not by running `ip`.

Addresses, MTU, link state and routes of a device in the caller's network namespace. This is
setup, not the data path: each call opens its own netlink socket and closes it again.
Every failure becomes a `DeviceError` with a one-line message naming the device and the step.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Any, TypeAlias

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from tunnel.io.device import DeviceError

Interface: TypeAlias = IPv4Interface | IPv6Interface
Network: TypeAlias = IPv4Network | IPv6Network
Gateway: TypeAlias = IPv4Address | IPv6Address
Route: TypeAlias = tuple[Network, Gateway | None]

IPV6_MIN_MTU = 1280  # below this the kernel removes IPv6 from a device (RFC 8200)
IFA_F_NODAD = 0x02  # <linux/if_addr.h>
_IPV6_CONF = Path("/proc/sys/net/ipv6/conf")


def configure_device(
    name: str,
    *,
    mtu: int,
    addresses: Sequence[Interface] = (),
    up: bool = True,
) -> None:
    """Set the MTU, add the addresses (present ones are kept) and bring the link up.

    For an IPv6 address, IPv6 is switched on for this one device if it was off (new devices
    in a namespace may inherit `disable_ipv6=1`): asking for an IPv6 address says we want it.
    """
    wants_ipv6 = any(a.version == 6 for a in addresses)
    if wants_ipv6 and mtu < IPV6_MIN_MTU:
        raise DeviceError(
            errno.EINVAL, f"{name}: IPv6 needs an MTU of at least {IPV6_MIN_MTU}, got {mtu}"
        )
    with IPRoute() as ipr:
        index = _index(ipr, name)
        _call(f"{name}: set mtu {mtu}", ipr.link, "set", index=index, mtu=mtu)
        if wants_ipv6:
            _enable_ipv6(name)
        for iface in addresses:
            extra: dict[str, Any] = {"flags": IFA_F_NODAD} if iface.version == 6 else {}
            try:
                ipr.addr(
                    "add",
                    index=index,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    **extra,
                )
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # already there: configuring is idempotent
                    raise _error(f"{name}: add address {iface}", exc) from exc
        if up:
            _call(f"{name}: set link up", ipr.link, "set", index=index, state="up")


def add_routes(name: str, routes: Sequence[Route]) -> None:
    """Route each network through device `name`, via the gateway when one is given."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        for network, gateway in routes:
            step = f"{name}: add route {network}" + (f" via {gateway}" if gateway else "")
            fields: dict[str, Any] = {"dst": str(network), "oif": index}
            if gateway is not None:
                if gateway.version != network.version:
                    raise DeviceError(errno.EINVAL, f"{step}: gateway is not IPv{network.version}")
                fields["gateway"] = str(gateway)
            _call(step, ipr.route, "add", **fields)


def set_link_up(name: str, up: bool) -> None:
    """Bring the link of device `name` up (True) or down (False)."""
    state = "up" if up else "down"
    with IPRoute() as ipr:
        _call(f"{name}: set link {state}", ipr.link, "set", index=_index(ipr, name), state=state)


def remove_device(name: str) -> None:
    """Delete device `name`; a device that does not exist (any more) is not an error."""
    with IPRoute() as ipr:
        indexes = ipr.link_lookup(ifname=name)
        if not indexes:
            return
        try:
            ipr.link("del", index=indexes[0])
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:  # gone between lookup and delete
                raise _error(f"{name}: delete device", exc) from exc


def link_exists(name: str) -> bool:
    """True when a device called `name` exists in this network namespace."""
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def _index(ipr: Any, name: str) -> int:
    indexes: list[int] = ipr.link_lookup(ifname=name)
    if not indexes:
        raise DeviceError(errno.ENODEV, f"no network device {name!r} in this namespace")
    return indexes[0]


def _call(step: str, method: Any, *args: Any, **kwargs: Any) -> None:
    try:
        method(*args, **kwargs)
    except NetlinkError as exc:
        raise _error(step, exc) from exc


def _error(step: str, exc: NetlinkError) -> DeviceError:
    code: int = exc.code
    hint = {
        errno.EPERM: "need root or CAP_NET_ADMIN",
        errno.EEXIST: "it exists already",
        errno.ENETUNREACH: "the gateway is not on a network of this device",
        errno.ENODEV: "the device disappeared",
    }.get(code, os.strerror(code))
    return DeviceError(code, f"{step}: {hint}")


def _enable_ipv6(name: str) -> None:
    if not _IPV6_CONF.is_dir():
        raise DeviceError(
            errno.EAFNOSUPPORT,
            f"{name}: cannot add an IPv6 address: IPv6 is disabled in this kernel "
            "(ipv6.disable=1 on its command line)",
        )
    switch = _IPV6_CONF / name / "disable_ipv6"
    try:
        if switch.read_text().strip() != "0":
            switch.write_text("0")
    except OSError as exc:
        raise DeviceError(
            exc.errno or errno.EPERM,
            f"{name}: IPv6 is disabled on this device and {switch} cannot be changed "
            f"({exc.strerror}); set net.ipv6.conf.{name}.disable_ipv6=0",
        ) from exc
