"""The `management*` options (OpenVPN 2.6 options.c semantics) and our `metrics-listen`.

`management IP PORT [PW-FILE]` or `management PATH unix [PW-FILE]`; the modifiers
(`management-hold`, `-query-passwords`, `-client-auth`, ...) need a `management` line, as
stock checks in options_postprocess ("--management is not specified, however one or more
options which modify the behavior of --management were specified"). Options that hand the
private key or the connection direction to the management client (`management-external-key`,
`management-external-cert`, `management-client`) are refused: a config that relies on them
would not work as its author expects.
"""

from __future__ import annotations

from ipaddress import ip_address

from tunnel.config.diagnostics import OptionProblem, quote
from tunnel.config.files import resolve_path
from tunnel.config.lexer import Directive
from tunnel.config.mgmt_model import ManagementOptions
from tunnel.config.model import TunnelConfig
from tunnel.config.registry import ParseContext, option
from tunnel.config.values import parse_host, parse_int, parse_port

__all__: list[str] = []


def _settings(cfg: TunnelConfig) -> ManagementOptions:
    if cfg.management is None:
        cfg.management = ManagementOptions()
    return cfg.management


@option("management", "IP|PATH PORT|unix [PW-FILE]")
def _management(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    m = _settings(cfg)
    if d.args[1] == "unix":
        if not d.args[0]:
            raise OptionProblem("option 'management' expects a socket path before 'unix'")
        m.unix_path = resolve_path(ctx.base_dir, d.args[0])
        m.host = m.port = None
    else:
        m.host = parse_host(d, 0)
        m.port = parse_port(d, 1, allow_zero=True)
        m.unix_path = None
    if len(d.args) > 2:
        if d.args[2] == "stdin":
            raise OptionProblem(
                "option 'management': reading the password from stdin is not supported; "
                "give a file holding it"
            )
        m.password_file = resolve_path(ctx.base_dir, d.args[2])


def _flag(name: str, attribute: str) -> None:
    def handle(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
        setattr(_settings(cfg), attribute, True)

    option(name)(handle)


_flag("management-hold", "hold")
_flag("management-query-passwords", "query_passwords")
_flag("management-up-down", "up_down")
_flag("management-client-auth", "client_auth")
_flag("management-forget-disconnect", "forget_disconnect")
_flag("management-signal", "signal")


@option("management-log-cache", "N")
def _log_cache(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    _settings(cfg).log_cache = parse_int(d, 0, 1, 1_000_000)


@option("management-client-user", "USER")
def _client_user(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    _settings(cfg).client_user = d.args[0]


@option("management-client-group", "GROUP")
def _client_group(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    _settings(cfg).client_group = d.args[0]


def _refused(name: str, usage: str, why: str) -> None:
    def handle(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
        raise OptionProblem(f"option {quote(name)} is not supported: {why}")

    option(name, usage, any_arity=True)(handle)


_refused("management-client", "", "the management interface listens; it does not connect out")
_refused("management-external-key", "[FLAGS...]",
         "the private key must be given with 'key'")
_refused("management-external-cert", "HINT", "the certificate must be given with 'cert'")


@option("metrics-listen", "ADDR:PORT")
def _metrics_listen(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.metrics_listen = parse_listen(d.args[0])


def parse_listen(text: str) -> tuple[str, int]:
    """"127.0.0.1:9100" / "[::1]:9100" -> (host, port); OptionProblem if bad."""
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = str(ip_address(host))
        port = int(port_text) if port_text.isdigit() and len(port_text) <= 5 else -1
    except ValueError:
        address, port = "", -1
    if not sep or not address or not 1 <= port <= 65535:
        raise OptionProblem(
            f"option 'metrics-listen' expects ADDR:PORT with an IP address and a port "
            f"1..65535, got {quote(text)}"
        )
    return address, port
