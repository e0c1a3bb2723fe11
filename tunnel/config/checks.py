"""Cross-option consistency checks on a finished TunnelConfig (the parser's last step).

Mostly OpenVPN's own (``options.c: options_postprocess_verify_ce()``, ``helper.c``), reworded,
plus the ones that follow from what this tunnel supports (tun only, certificates only). Each
error is located at the line of the option it is about, or at the end of the file when the
problem is a missing option.
"""

from __future__ import annotations

from tunnel.config.ciphers import SUPPORTED_DATA_CIPHERS
from tunnel.config.diagnostics import quote
from tunnel.config.model import TunnelConfig

__all__ = ["check_config", "device_type_of"]

_TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


def device_type_of(dev: str, dev_type: str | None) -> str | None:
    """tun/tap/null as OpenVPN's ``dev_type_enum()`` decides it; None if it cannot tell."""
    if dev_type is not None:
        return dev_type
    for kind in ("tun", "tap", "null"):
        if dev.startswith(kind):
            return kind
    return None


def check_config(cfg: TunnelConfig) -> None:
    _check_role(cfg)
    _check_device(cfg)
    _check_tls(cfg)
    _check_ciphers(cfg)
    if cfg.role == "server":
        _check_server(cfg)
    else:
        _check_client(cfg)
    _check_server_only_options(cfg)
    _check_binding(cfg)
    _check_management(cfg)


def _check_role(cfg: TunnelConfig) -> None:
    if cfg.role is None:
        raise cfg.error(
            "client",
            "the config has no role: add 'client' (or 'tls-client') for a client, or "
            "'server NET MASK' (or 'tls-server') for a server",
        )
    if cfg.tls_server and cfg.tls_client:
        raise cfg.error(
            "tls-client" if "tls-client" in cfg.option_lines else "client",
            "a config is a client ('client'/'tls-client') or a server ('server'/'tls-server'), "
            "not both",
        )
    if cfg.mode == "server" and cfg.role != "server":
        raise cfg.error("mode", "option 'mode server' needs 'tls-server' (or use 'server')")


def _check_device(cfg: TunnelConfig) -> None:
    if cfg.dev is None:
        raise cfg.error("dev", "option 'dev' is missing: add 'dev tun'")
    kind = device_type_of(cfg.dev, cfg.dev_type)
    if kind is None:
        raise cfg.error(
            "dev",
            f"option 'dev': cannot tell the device type of {quote(cfg.dev)}: use a name "
            "starting with 'tun' or add 'dev-type tun'",
        )
    if kind != "tun":
        where = "dev-type" if cfg.dev_type is not None else "dev"
        raise cfg.error(
            where, f"option {quote(where)}: only dev tun is supported, got {quote(kind)}"
        )
    if cfg.topology not in ("subnet", "net30", "p2p"):
        raise cfg.error("topology", "option 'topology': subnet, net30 or p2p")
    if cfg.ifconfig is not None and cfg.ifconfig.network.prefixlen <= 30:
        network = cfg.ifconfig.network
        if cfg.ifconfig.ip in (network.network_address, network.broadcast_address):
            raise cfg.error(
                "ifconfig",
                f"option 'ifconfig': {cfg.ifconfig.ip} is the network or broadcast address of "
                f"{network}, not a host address",
            )


def _check_tls(cfg: TunnelConfig) -> None:
    if cfg.ca_pem is None and cfg.ops.capath is None and not cfg.ops.peer_fingerprints:
        raise cfg.error(
            "ca", "option 'ca' is missing: the peer's certificate cannot be verified without it"
        )
    if (cfg.cert_pem is None) != (cfg.key_pem is None):
        given, missing = ("cert", "key") if cfg.key_pem is None else ("key", "cert")
        raise cfg.error(given, f"option {quote(given)} needs a matching {quote(missing)}")
    if cfg.cert_pem is None and (cfg.role == "server" or cfg.auth_user_pass is None):
        if cfg.role == "server":
            raise cfg.error(
                "cert", "options 'cert' and 'key' are missing: a server needs a certificate "
                "and its key"
            )
        raise cfg.error(
            "cert",
            "No client-side authentication method is specified. You must use either "
            "--cert/--key or --auth-user-pass (options 'cert' and 'key' are missing)",
        )
    _check_user_pass(cfg)
    low, high = cfg.tls_version_min, cfg.tls_version_max
    for option, version in (("tls-version-min", low), ("tls-version-max", high)):
        if version is not None and version not in _TLS_VERSIONS:
            raise cfg.error(option, f"option {quote(option)}: unknown TLS version {version!r}")
    if low is not None and high is not None and low > high:  # "1.x" strings sort correctly
        raise cfg.error(
            "tls-version-min", f"option 'tls-version-min' {low} is above 'tls-version-max' {high}"
        )


def _check_user_pass(cfg: TunnelConfig) -> None:
    """options.c: what needs a non-certificate authentication method on a server."""
    if cfg.role != "server":
        for option, given in (("auth-user-pass-verify", cfg.auth_user_pass_verify is not None),
                              ("verify-client-cert", "verify-client-cert" in cfg.option_lines),
                              ("username-as-common-name", cfg.username_as_common_name)):
            if given:
                raise cfg.error(option, f"option {quote(option)} only applies to a server")
        return
    mgmt = cfg.management
    method = cfg.auth_user_pass_verify is not None or (mgmt is not None and mgmt.client_auth)
    if method:
        return
    for option, given in (("verify-client-cert", cfg.verify_client_cert != "require"),
                          ("username-as-common-name", cfg.username_as_common_name)):
        if given:
            what = "verify-client-cert none|optional" if option == "verify-client-cert" else option
            raise cfg.error(
                option, f"--{what} must be used with --management-client-auth, an "
                "--auth-user-pass-verify script, or plugin",
            )


def _check_ciphers(cfg: TunnelConfig) -> None:
    if not cfg.data_ciphers:
        raise cfg.error("data-ciphers", "option 'data-ciphers' leaves no usable cipher")
    for name in [*cfg.data_ciphers, cfg.data_ciphers_fallback]:
        if name is not None and name not in SUPPORTED_DATA_CIPHERS:
            raise cfg.error(
                "data-ciphers", f"option 'data-ciphers': cipher {quote(name)} is not supported"
            )


def _check_server(cfg: TunnelConfig) -> None:
    if cfg.ifconfig is None and cfg.ifconfig_ipv6 is None:
        raise cfg.error(
            "tls-server",
            "a server needs its tunnel address: add 'server NET MASK' (or 'ifconfig ADDR MASK')",
        )
    if cfg.mode != "server":
        return
    if cfg.pull:
        raise cfg.error(
            "pull" if "pull" in cfg.option_lines else "client",
            "options 'pull'/'client' cannot be used in a server ('server' / 'mode server')",
        )
    if any(remote.profile is not None for remote in cfg.remotes):
        raise cfg.error("connection", "<connection> blocks cannot be used in a server")
    if cfg.remotes:
        raise cfg.error(
            "remote", "option 'remote' cannot be used in a server ('server' / 'mode server')"
        )
    if cfg.http_proxy is not None:
        raise cfg.error("http-proxy", "option 'http-proxy' is for clients; a server listens")
    if cfg.proto_tcp_role == "client":
        raise cfg.error(
            "proto", "a server listens: use 'proto tcp-server' (or 'tcp'), not a tcp-client proto"
        )
    if cfg.nobind:
        raise cfg.error(
            "nobind", "option 'nobind' cannot be used in a server ('server' / 'mode server')"
        )
    # stock's words (options.c options_postprocess_verify_ce)
    if "ipchange" in cfg.ops.scripts:
        raise cfg.error("ipchange", "--ipchange cannot be used with --mode server (use "
                        "--client-connect instead)")
    if cfg.ops.redirect_gateway is not None and "!ipv4" not in cfg.ops.redirect_gateway:
        raise cfg.error("redirect-gateway", "--redirect-gateway cannot be used with --mode "
                        "server (however --push \"redirect-gateway\" is fine)")
    if cfg.ops.route_delay is not None:
        raise cfg.error("route-delay", "--route-delay cannot be used with --mode server")
    if cfg.ops.up_delay:
        raise cfg.error("up-delay", "--up-delay cannot be used with --mode server")
    pool, ifconfig = cfg.pool, cfg.ifconfig
    if pool is not None and ifconfig is not None:
        where = "ifconfig-pool" if "ifconfig-pool" in cfg.option_lines else "server"
        network = ifconfig.network
        if pool.start not in network or pool.end not in network:
            raise cfg.error(
                where,
                f"option {quote(where)}: the pool {pool.start}-{pool.end} is not inside the "
                f"server's subnet {network} (topology subnet)",
            )
        if pool.start <= ifconfig.ip <= pool.end:
            raise cfg.error(
                where,
                f"option {quote(where)}: the pool {pool.start}-{pool.end} contains the server's "
                f"own address {ifconfig.ip}",
            )
    if cfg.pool_ipv6 is not None and cfg.ifconfig_ipv6 is None:
        raise cfg.error("ifconfig-ipv6-pool", "option 'ifconfig-ipv6-pool' needs 'ifconfig-ipv6'")


def _check_client(cfg: TunnelConfig) -> None:
    if not cfg.remotes:
        raise cfg.error(
            "client" if "client" in cfg.option_lines else "tls-client",
            "a client needs at least one 'remote HOST [PORT]'",
        )
    if cfg.proto_tcp_role == "server":
        raise cfg.error(
            "proto", "a client connects: use 'proto tcp-client' (or 'tcp'), not a tcp-server proto"
        )


def _check_server_only_options(cfg: TunnelConfig) -> None:
    if cfg.mode == "server":
        return
    used = [
        ("ifconfig-pool", cfg.pool is not None),
        ("ifconfig-ipv6-pool", cfg.pool_ipv6 is not None),
        ("client-to-client", cfg.client_to_client),
        ("duplicate-cn", cfg.duplicate_cn),
    ]
    for option, given in used:
        if given:
            raise cfg.error(
                option,
                f"option {quote(option)} needs a multi-client server ('server NET MASK' or "
                "'mode server')",
            )


def _check_binding(cfg: TunnelConfig) -> None:
    if not cfg.nobind:
        return
    if not cfg.remotes:
        raise cfg.error("nobind", "option 'nobind' only makes sense with a 'remote'")
    if cfg.local is not None:
        raise cfg.error("local", "options 'local' and 'nobind' contradict each other")
    if "lport" in cfg.option_lines:
        raise cfg.error("lport", "options 'lport' and 'nobind' contradict each other")


def _check_management(cfg: TunnelConfig) -> None:
    m = cfg.management
    if m is None:
        return
    if not m.listens:
        raise cfg.error(
            "management-hold" if "management-hold" in cfg.option_lines else "management",
            "--management is not specified, however one or more options which modify the "
            "behavior of --management were specified",
        )
    if m.client_auth and cfg.role != "server":
        raise cfg.error("management-client-auth", "--management-client-auth requires "
                        "--mode server")
    if (m.client_user or m.client_group) and m.unix_path is None:
        option = "management-client-user" if m.client_user else "management-client-group"
        raise cfg.error(option, f"--{option} needs 'management PATH unix' (it checks the "
                        "user of a unix socket's peer)")
