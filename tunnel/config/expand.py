"""OpenVPN's helper directives and late defaults, applied once the whole file has been read.

Mirrors ``options.c: options_postprocess_mutate()`` in its order: ``helper_client_server()``
(``server-ipv6``, ``server``, ``client``), then ``helper_keepalive()``, then the per-connection
defaults (remote ports and protocols, local binding, mssfix). These must wait for the end of the
file because OpenVPN lets the options they depend on (``topology``, ``port``, ``tun-mtu``, the
ping options) appear anywhere.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Interface, IPv6Interface

from tunnel.config.checks import device_type_of
from tunnel.config.ciphers import DEFAULT_DATA_CIPHERS
from tunnel.config.diagnostics import config_error
from tunnel.config.model import AddressPool, Remote, TunnelConfig
from tunnel.config.registry import ParseContext

__all__ = ["expand"]


def expand(cfg: TunnelConfig, ctx: ParseContext) -> None:
    _expand_server_ipv6(cfg)
    _expand_server(cfg, ctx)
    if cfg.client:  # helper.c: client = pull + tls-client
        cfg.pull = cfg.tls_client = True
    cfg.role = "server" if cfg.tls_server else "client" if cfg.tls_client else None
    _expand_keepalive(cfg)
    _settle_link(cfg, ctx)
    _settle_mssfix(cfg, ctx)
    if cfg.dev is not None and cfg.dev_type is None and device_type_of(cfg.dev, None) == "tun":
        cfg.dev_type = "tun"
    _cipher_notes(cfg)
    _compression_notes(cfg)


def _compression_notes(cfg: TunnelConfig) -> None:
    """Stock's warning when a real algorithm enables decompression (comp.c, options.c)."""
    if cfg.compression_mode == "asym" and cfg.compression is not None:
        cfg.note(
            "compression",
            "WARNING: Compression for receiving enabled. Compression has been used in the past "
            "to break encryption. Sent packets are never compressed by this tunnel.",
        )


def _cipher_notes(cfg: TunnelConfig) -> None:
    """Stock's words about `cipher` (options.c: options_postprocess_cipher()), pull/server only."""
    if not (cfg.pull or cfg.mode == "server"):
        return
    conf = "DEFAULT" if cfg.data_ciphers == list(DEFAULT_DATA_CIPHERS) else ":".join(
        cfg.data_ciphers
    )
    # (Stock's info line for a config without --cipher suggests BF-CBC, which this tunnel
    # does not implement, so it is not repeated here.)
    if cfg.cipher is None:
        return
    if cfg.data_ciphers_fallback is None and cfg.cipher not in cfg.data_ciphers:
        cfg.note(
            "cipher",
            f"DEPRECATED OPTION: --cipher set to '{cfg.cipher}' but missing in --data-ciphers "
            f"({conf}). OpenVPN ignores --cipher for cipher negotiations.",
        )


def _expand_server_ipv6(cfg: TunnelConfig) -> None:
    """server-ipv6 NET/BITS -> mode server, tls-server, ifconfig-ipv6 +1/+2, a pool, tun-ipv6."""
    if cfg.server_ipv6 is None:
        return
    if cfg.client:
        raise cfg.error("server-ipv6", "options 'server-ipv6' and 'client' cannot be used together")
    if cfg.server_nopool:
        raise cfg.error(
            "server-ipv6", "option 'server-ipv6' cannot be used with 'server ... nopool'"
        )
    if cfg.pool_ipv6 is not None:
        raise cfg.error(
            "ifconfig-ipv6-pool",
            "option 'ifconfig-ipv6-pool' conflicts with 'server-ipv6', which defines the pool",
        )
    cfg.mode, cfg.tls_server = "server", True
    base, network = cfg.server_ipv6.ip, cfg.server_ipv6.network
    bits = network.prefixlen
    # helper.c: large pools start at +0x1000, small ones (/112 and longer) right after +1.
    pool_offset = 0x1000 if bits < 112 else 2
    # OpenVPN adds to the address as written; refuse what would leave the prefix (or wrap).
    if int(base) + pool_offset > int(network.broadcast_address):
        raise cfg.error(
            "server-ipv6",
            f"option 'server-ipv6': {cfg.server_ipv6} leaves no room for the server and pool "
            f"addresses inside {network} (write the network address, {network})",
        )
    cfg.ifconfig_ipv6 = IPv6Interface(f"{base + 1}/{bits}")
    cfg.ifconfig_ipv6_remote = base + 2
    cfg.pool_ipv6 = IPv6Interface(f"{base + pool_offset}/{bits}")


def _expand_server(cfg: TunnelConfig, ctx: ParseContext) -> None:
    """server NET MASK -> mode server, tls-server, ifconfig .1, pool .2 .. broadcast-1.

    With topology subnet OpenVPN also pushes "route-gateway .1" and "topology subnet"; the model
    derives those (``TunnelConfig.push_list``) from ``server`` rather than storing them.
    """
    network = cfg.server
    if network is None:
        return
    if cfg.client:
        raise cfg.error("server", "options 'server' and 'client' cannot be used together")
    if cfg.pool is not None and not cfg.server_nopool:
        raise cfg.error(
            "ifconfig-pool",
            "option 'ifconfig-pool' conflicts with 'server', which defines the pool "
            "(use 'server NET MASK nopool' to give your own)",
        )
    if cfg.ifconfig is not None:
        cfg.note("ifconfig", "'ifconfig' is replaced by the address 'server' defines")
    cfg.mode, cfg.tls_server = "server", True
    first = network.network_address
    cfg.ifconfig = IPv4Interface(f"{first + 1}/{network.prefixlen}")
    if not cfg.server_nopool and cfg.topology in ("net30", "p2p"):
        # helper.c: the pool starts at .4 and keeps the last /30 free (a /29 keeps nothing).
        reserve = 0 if network.prefixlen == 29 else 4
        cfg.pool = AddressPool(first + 4, network.broadcast_address - reserve, None)
    elif not cfg.server_nopool:
        cfg.pool = AddressPool(first + 2, network.broadcast_address - 1, network.netmask)
    elif cfg.pool is not None:
        cfg.pool = replace(cfg.pool, netmask=network.netmask)
    if not ctx.topology_given:
        cfg.note(
            "server",
            "no 'topology' given: using 'topology subnet' (OpenVPN 2.7's default; a stock 2.6 "
            "server would use net30 here)",
        )


def _expand_keepalive(cfg: TunnelConfig) -> None:
    """keepalive N M -> ping N, ping-restart M; in server mode ping-restart 2M + push N/M."""
    if cfg.keepalive is None:
        return
    if cfg.ping or cfg.ping_restart or cfg.ping_exit:
        raise cfg.error(
            "keepalive",
            "option 'keepalive' conflicts with 'ping'/'ping-restart'/'ping-exit' "
            "(keepalive sets them; use one or the other)",
        )
    interval, timeout = cfg.keepalive
    cfg.ping = interval
    if cfg.mode == "server":
        # The server waits twice as long as it tells clients to, so that it is never the side
        # that gives up first.
        cfg.ping_restart = 2 * timeout
        cfg.push_ping, cfg.push_ping_restart = interval, timeout
    else:
        cfg.ping_restart = timeout


def _settle_link(cfg: TunnelConfig, ctx: ParseContext) -> None:
    cfg.remotes = [
        Remote(item.host, item.port or cfg.rport, item.proto or cfg.proto) for item in ctx.remotes
    ]
    if cfg.explicit_exit_notify and cfg.proto.startswith("tcp"):
        cfg.note("explicit-exit-notify", "NOTICE: --explicit-exit-notify ignored for --proto tcp "
                 "(as in OpenVPN)")
    if ctx.connections:
        # options.c: with a connection list the remote list is not converted into entries.
        if ctx.remotes:
            cfg.note_at(ctx.remotes[0].line, "'remote' lines outside <connection> blocks are "
                        "ignored when the file has <connection> blocks, as in OpenVPN")
        cfg.remotes = list(ctx.connections)
    for remote in cfg.remotes:
        proxy = remote.profile.http_proxy if remote.profile is not None else cfg.http_proxy
        if proxy is not None and not remote.proto.startswith("tcp"):
            line = remote.profile.line if remote.profile is not None else cfg.line_of("http-proxy")
            raise config_error(cfg.source, line, "'http-proxy' must be used with TCP remotes "
                               f"('proto tcp-client'); remote {remote.host} is {remote.proto}")
    # options_postprocess_mutate_ce(): a pulling client binds only if asked to (local/lport),
    # otherwise it uses a random source port like any ordinary UDP client.
    asked_to_bind = cfg.local is not None or "lport" in cfg.option_lines
    cfg.bind_local = not cfg.nobind and (asked_to_bind or not cfg.pull)


def _settle_mssfix(cfg: TunnelConfig, ctx: ParseContext) -> None:
    if not ctx.mssfix_default:
        return
    if cfg.tun_mtu == 1500:  # mtu.h: MSSFIX_DEFAULT applies only to the default tun-mtu
        cfg.mssfix, cfg.mssfix_mode = 1492, "mtu"
    else:
        cfg.mssfix, cfg.mssfix_mode = cfg.tun_mtu, "fixed"
