"""The table of supported options: role, device, link, addresses, keepalive, process.

TLS, ciphers, compression and the refused security options are in ``options_crypto.py``;
importing this module registers both halves in :data:`OPTIONS`. Semantics follow OpenVPN 2.6
``options.c: add_option()``; where we are stricter or differ, the handler says why.

Decisions worth knowing:

* ``topology``: subnet, net30 or p2p. net30/p2p give each client its own /30 (or a single
  address) and a point-to-point ifconfig, laid out as stock's helper.c does (pool from .4,
  "route SERVER" pushed for net30). When ``topology`` is absent we use subnet (OpenVPN 2.7's
  default; 2.6's is net30) and leave a note for a server.
* ``dev``: tun only; ``dev tap`` (or ``dev-type tap``) is an error at its line.
* ``ifconfig A B``: under topology subnet B is a netmask; a point-to-point B is an error.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import tunnel.config.options_auth  # username/password (auth-user-pass, -verify, ...)
import tunnel.config.options_crypto  # importing it registers the TLS half
import tunnel.config.options_ops  # operations half (issue 11 part B)
import tunnel.config.options_transport  # TCP and connection-profile options
import tunnel.config.options_wrap  # noqa: F401  (tls-auth, tls-crypt, tls-crypt-v2)
from tunnel.config import options_mgmt as _options_mgmt  # noqa: F401  (management*)
from tunnel.config.diagnostics import OptionProblem, quote
from tunnel.config.files import resolve_path
from tunnel.config.lexer import Directive
from tunnel.config.model import AddressPool, Proto, Route, RouteIPv6, TunnelConfig
from tunnel.config.registry import (
    OPTIONS,
    OptionSpec,
    ParseContext,
    PendingRemote,
    flag_option,
    number_option,
    option,
)
from tunnel.config.values import (
    parse_choice,
    parse_host,
    parse_int,
    parse_ipv4,
    parse_ipv6,
    parse_ipv6_prefix,
    parse_netmask,
    parse_port,
)
from tunnel.protocol.messages import max_pushed_option

__all__ = ["OPTIONS", "SUPPORTED_OPTIONS", "OptionSpec", "ParseContext"]

_UDP = ("udp", "udp4", "udp6")
_TCP = tuple(
    f"tcp{family}{role}" for family in ("", "4", "6") for role in ("", "-client", "-server")
)
_ROUTE_SPECIAL = ("vpn_gateway", "net_gateway", "remote_host")
_IFNAMSIZ = 16  # Linux interface names are at most 15 bytes
_INT_MAX = 2**31 - 1


# -- role and mode ----------------------------------------------------------------------

flag_option("client", "client")
flag_option("pull", "pull")
flag_option("tls-client", "tls_client")
flag_option("tls-server", "tls_server")


@option("mode", "p2p|server")
def _mode(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.mode = "server" if parse_choice(d, 0, ("p2p", "server")) == "server" else "p2p"


# -- tun device -------------------------------------------------------------------------


@option("dev", "tun|tunN|NAME")
def _dev(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    name = d.args[0]
    usable = name.isprintable() and not any(ch.isspace() or ch == "/" for ch in name)
    if not name or len(name.encode()) >= _IFNAMSIZ or not usable:
        raise OptionProblem(
            f"option 'dev' expects an interface name of 1..15 characters, got {quote(name)}"
        )
    cfg.dev = name


@option("dev-type", "tun")
def _dev_type(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    kind = d.args[0]
    if kind in ("tap", "null"):
        raise OptionProblem(f"option 'dev-type': only dev tun is supported, got {quote(kind)}")
    cfg.dev_type = parse_choice(d, 0, ("tun",))


@option("topology", "subnet|net30|p2p")
def _topology(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    # net30/p2p on a server: each client gets a /30 (net30) or a single address (p2p) and a
    # point-to-point ifconfig, as stock's helper.c lays them out (issue 11).
    cfg.topology = parse_choice(d, 0, ("subnet", "net30", "p2p"))
    ctx.topology_given = True


@option("tun-mtu", "N [OCC_MTU]")
def _tun_mtu(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.tun_mtu = parse_int(d, 0, 100, 65535)  # 100: OpenVPN's TUN_MTU_MIN
    cfg.occ_mtu = parse_int(d, 1, 100, 65535) if len(d.args) > 1 else None


@option("mssfix", "[N [mtu|fixed]]")
def _mssfix(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if not d.args:  # bare `mssfix`: back to the default, computed once tun-mtu is known
        ctx.mssfix_default = True
        return
    ctx.mssfix_default = False
    value = parse_int(d, 0, 0, 65535)
    cfg.mssfix = value or None
    cfg.mssfix_mode = "payload"  # OpenVPN: a bare number excludes the outer IP/UDP headers
    if len(d.args) > 1:
        cfg.mssfix_mode = "mtu" if parse_choice(d, 1, ("mtu", "fixed")) == "mtu" else "fixed"


number_option("txqueuelen", "txqueuelen", 0, _INT_MAX)
flag_option("persist-tun", "persist_tun")
flag_option("persist-key", "persist_key")
flag_option("disable-dco", "disable_dco")  # accepted: we never use DCO anyway


# -- UDP link ---------------------------------------------------------------------------


_PROTOS: dict[str, Proto] = {"udp": "udp", "udp4": "udp4", "udp6": "udp6",
                             "tcp": "tcp", "tcp4": "tcp4", "tcp6": "tcp6"}


def _parse_proto(d: Directive, index: int) -> Proto:
    """udp|udp4|udp6|tcp|tcp4|tcp6, with tcp's -client/-server suffix taken off."""
    value = parse_choice(d, index, _UDP + _TCP)
    return _PROTOS[value.split("-")[0]]


@option("proto", "udp|udp4|udp6|tcp|tcp4|tcp6|tcp-client|tcp-server|tcp4-client|...")
def _proto(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.proto = _parse_proto(d, 0)
    suffix = d.args[0].partition("-")[2]
    cfg.proto_tcp_role = "client" if suffix == "client" else "server" if suffix else None


@option("port", "PORT")
def _port(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.lport = cfg.rport = parse_port(d, 0)


@option("lport", "PORT")
def _lport(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.lport = parse_port(d, 0, allow_zero=True)


@option("rport", "PORT")
def _rport(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.rport = parse_port(d, 0)


@option("local", "ADDRESS")
def _local(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.local = parse_host(d, 0)


@option("remote", "HOST [PORT] [PROTO]")
def _remote(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    host = parse_host(d, 0)
    port = parse_port(d, 1) if len(d.args) > 1 else None
    proto = _parse_proto(d, 2) if len(d.args) > 2 else None
    if len(d.args) > 2 and d.args[2].endswith("-server"):
        raise OptionProblem(
            f"option 'remote': {quote(d.args[2])} makes no sense for a remote, which is always "
            "connected to (use 'tcp' or 'tcp-client')"
        )
    ctx.remotes.append(PendingRemote(d.line, host, port, proto))


flag_option("remote-random", "remote_random")
flag_option("nobind", "nobind")
flag_option("float", "remote_float")
flag_option("fast-io", "fast_io")
number_option("sndbuf", "sndbuf", 0, _INT_MAX)
number_option("rcvbuf", "rcvbuf", 0, _INT_MAX)


@option("resolv-retry", "N|infinite")
def _resolv_retry(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.resolv_retry = None if d.args[0] == "infinite" else parse_int(d, 0, 0, _INT_MAX)


@option("connect-retry", "N [MAX]")
def _connect_retry(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.connect_retry = parse_int(d, 0, 0, 65535)  # OpenVPN caps the base at 16 bits
    if len(d.args) > 1:  # OpenVPN: the maximum is never below the base
        cfg.connect_retry_max = max(parse_int(d, 1, 0, _INT_MAX), cfg.connect_retry)


# -- addresses --------------------------------------------------------------------------


@option("server", "NETWORK NETMASK [nopool]")
def _server(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    address = parse_ipv4(d, 0, "a network address such as 10.8.0.0")
    netmask = parse_netmask(d, 1)
    network = IPv4Network(f"{address}/{netmask}", strict=False)
    if network.network_address != address or int(address) == 0:
        raise OptionProblem(
            f"option 'server': {address} is not a network address for {netmask} "
            f"(did you mean {network.network_address}?)"
        )
    # helper.c: at most 65536 pool addresses, and a tun server needs room for itself + clients.
    if not 16 <= network.prefixlen <= 29:
        raise OptionProblem(
            f"option 'server': the netmask must be between 255.255.0.0 and 255.255.255.248 "
            f"(/16../29), got {netmask}"
        )
    if len(d.args) > 2:
        parse_choice(d, 2, ("nopool",))
    cfg.server = network
    cfg.server_nopool = len(d.args) > 2


@option("server-ipv6", "NETWORK/BITS")
def _server_ipv6(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.server_ipv6 = parse_ipv6_prefix(d, 0, min_bits=64, max_bits=124)


@option("ifconfig", "ADDRESS NETMASK")
def _ifconfig(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    address = parse_ipv4(d, 0)
    try:
        netmask = parse_netmask(d, 1)
    except OptionProblem:
        raise OptionProblem(
            f"option 'ifconfig': with topology subnet the second argument is a netmask, got "
            f"{quote(d.args[1])} (point-to-point 'ifconfig LOCAL REMOTE' is not supported)"
        ) from None
    cfg.ifconfig = IPv4Interface(f"{address}/{netmask}")


@option("ifconfig-pool", "START END [NETMASK]")
def _ifconfig_pool(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    start, end = parse_ipv4(d, 0), parse_ipv4(d, 1)
    netmask = parse_netmask(d, 2) if len(d.args) > 2 else None
    if start > end:
        raise OptionProblem(f"option 'ifconfig-pool': start {start} is after end {end}")
    if int(end) - int(start) >= 65536:  # pool.c: IFCONFIG_POOL_MAX
        raise OptionProblem("option 'ifconfig-pool': more than 65536 addresses")
    cfg.pool = AddressPool(start, end, netmask)


@option("ifconfig-ipv6", "ADDRESS/BITS REMOTE")
def _ifconfig_ipv6(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ifconfig_ipv6 = parse_ipv6_prefix(d, 0, min_bits=64, max_bits=124)
    cfg.ifconfig_ipv6_remote = parse_ipv6(d, 1)


@option("ifconfig-ipv6-pool", "ADDRESS/BITS")
def _ifconfig_ipv6_pool(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.pool_ipv6 = parse_ipv6_prefix(d, 0, min_bits=64, max_bits=124)


def _defined(d: Directive, index: int) -> bool:
    # route.c: is_route_parm_defined(): an absent argument or the word "default" means unset.
    return len(d.args) > index and d.args[index] != "default"


def _route_metric(d: Directive, index: int) -> int | None:
    return parse_int(d, index, 0, _INT_MAX) if _defined(d, index) else None


@option("route", "NETWORK [NETMASK] [GATEWAY] [METRIC]")
def _route(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    network: IPv4Address | str = d.args[0]
    if network == "default":  # route.c: an undefined network makes the route fail
        raise OptionProblem("option 'route' needs a destination network, got 'default'")
    if network not in _ROUTE_SPECIAL:
        if ":" in d.args[0]:
            raise OptionProblem(
                f"option 'route' is IPv4 only, got {quote(d.args[0])}; use 'route-ipv6'"
            )
        text = parse_host(d, 0)
        try:
            network = IPv4Address(text)
        except ValueError:
            network = text  # a DNS name, resolved when the route is installed
    netmask = parse_netmask(d, 1) if _defined(d, 1) else IPv4Address("255.255.255.255")
    if isinstance(network, IPv4Address):
        real = IPv4Network(f"{network}/{netmask}", strict=False).network_address
        if real != network:  # the kernel would refuse the route when it is installed
            raise OptionProblem(
                f"option 'route': {network} has host bits set for {netmask} (did you mean {real}?)"
            )
    gateway: IPv4Address | str | None = None
    if _defined(d, 2):
        gateway = d.args[2]
        if gateway not in _ROUTE_SPECIAL:
            if ":" in gateway:
                raise OptionProblem(f"option 'route' needs an IPv4 gateway, got {quote(gateway)}")
            text = parse_host(d, 2)
            try:
                gateway = IPv4Address(text)
            except ValueError:
                gateway = text
    cfg.routes.append(Route(network, netmask, gateway, _route_metric(d, 3)))


@option("route-ipv6", "NETWORK/BITS [GATEWAY] [METRIC]")
def _route_ipv6(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    prefix = parse_ipv6_prefix(d, 0)
    gateway = parse_ipv6(d, 1) if _defined(d, 1) else None
    cfg.routes_ipv6.append(RouteIPv6(prefix.network, gateway, _route_metric(d, 2)))


# Items the session itself puts in every PUSH_REPLY; pushing them by hand would contradict what
# the session negotiates. (`comp-lzo`/`compress` may be pushed: the server's own framing must be
# the same, as with stock.)
_NOT_PUSHABLE = ("key-derivation", "protocol-flags", "peer-id")


@option("push", '"OPTION ARGS..."')
def _push(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    item = d.args[0]
    if not item.strip():
        raise OptionProblem("option 'push' needs a non-empty option to push")
    if "," in item:  # push.c: commas separate the options of PUSH_REPLY
        raise OptionProblem(f"option 'push': a pushed option cannot contain ',': {quote(item)}")
    if not item.isprintable():
        raise OptionProblem(f"option 'push': a pushed option must be printable: {quote(item)}")
    size = len(item.encode())
    if size > max_pushed_option():
        raise OptionProblem(
            f"option 'push': the pushed option is {size} bytes, longer than one PUSH_REPLY "
            f"part can carry ({max_pushed_option()} bytes)"
        )
    first = item.split()[0]
    if first in _NOT_PUSHABLE:
        raise OptionProblem(
            f"option 'push': pushing {quote(first)} is not supported (the session negotiates "
            "it, or it would change the data-packet framing)"
        )
    cfg.pushes.append(item)


flag_option("client-to-client", "client_to_client")
flag_option("duplicate-cn", "duplicate_cn")
number_option("max-clients", "max_clients", 1, 0xFFFFFE)  # peer-ids are 24 bits


@option("connect-freq-initial", "N SECS")
def _connect_freq_initial(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    # options.c: atoi_constrained(..., 1, INT_MAX) for both.
    cfg.connect_freq_initial = (parse_int(d, 0, 1, _INT_MAX), parse_int(d, 1, 1, _INT_MAX))


# -- keepalive and exit -----------------------------------------------------------------


@option("keepalive", "INTERVAL TIMEOUT")
def _keepalive(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    interval, timeout = parse_int(d, 0, 1, _INT_MAX), parse_int(d, 1, 1, _INT_MAX)
    if timeout < 2 * interval:  # helper.c: helper_keepalive()
        raise OptionProblem(
            f"option 'keepalive': the timeout ({timeout}) must be at least twice the ping "
            f"interval ({interval}); 'keepalive 10 60' is the usual setting"
        )
    cfg.keepalive = (interval, timeout)


number_option("ping", "ping", 0, _INT_MAX)


@option("ping-restart", "N")
def _ping_restart(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    # OpenVPN keeps one receive timeout with an action; the later of the two options wins.
    cfg.ping_restart, cfg.ping_exit = parse_int(d, 0, 0, _INT_MAX), 0


@option("ping-exit", "N")
def _ping_exit(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.ping_exit, cfg.ping_restart = parse_int(d, 0, 0, _INT_MAX), 0


@option("explicit-exit-notify", "[N]")
def _explicit_exit_notify(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.explicit_exit_notify = parse_int(d, 0, 0, 65535) if d.args else 1


# -- process ----------------------------------------------------------------------------


@option("user", "NAME")
def _user(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.user = _name(d)


@option("group", "NAME")
def _group(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.group = _name(d)


def _name(d: Directive) -> str:
    if not d.args[0]:
        raise OptionProblem(f"option {quote(d.name)} needs a non-empty name")
    return d.args[0]


number_option("verb", "verb", 0, 11)
number_option("mute", "mute", 0, _INT_MAX)
number_option("status-version", "status_version", 1, 3)
number_option("script-security", "script_security", 0, 3)


@option("status", "FILE [SECONDS]")
def _status(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.status_file = resolve_path(ctx.base_dir, _name(d))
    if len(d.args) > 1:
        cfg.status_interval = parse_int(d, 1, 1, _INT_MAX)


@option("log", "FILE")
def _log(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.log_file, cfg.log_append = resolve_path(ctx.base_dir, _name(d)), False


@option("log-append", "FILE")
def _log_append(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.log_file, cfg.log_append = resolve_path(ctx.base_dir, _name(d)), True


@option("ignore-unknown-option", "OPTION...")
def _ignore_unknown_option(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    # As in OpenVPN this only covers options that come *after* it, and "--name" is allowed.
    for name in d.args:
        name = name[2:] if name.startswith("--") else name
        ctx.ignore_unknown.add(name)
        cfg.ignore_unknown_options.append(name)


@option("setenv", "NAME [VALUE]")
def _setenv(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    # (`setenv opt ...` is unwrapped by the parser before it gets here, as in add_option().)
    if d.args[0] == "FORWARD_COMPATIBLE" and d.args[1:] == ("1",):
        ctx.forward_compatible = True  # OpenVPN: unknown options become warnings
        return
    if d.args[0] == "PUSH_PEER_INFO":  # the pre-2.4 spelling of push-peer-info
        cfg.ops.push_peer_info = True
    # Handed to every script, as stock does (item 5 of issue 11).
    cfg.ops.setenv[d.args[0]] = d.args[1] if len(d.args) > 1 else ""


SUPPORTED_OPTIONS: tuple[str, ...] = tuple(sorted(OPTIONS))
