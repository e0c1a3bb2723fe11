"""The option table, transport half: TCP knobs, connection retries and timeouts, proxies.

Semantics follow OpenVPN 2.6 ``options.c``:

* ``connect-timeout N`` and ``server-poll-timeout N`` set the same value (OpenVPN's
  ``ce.connect_timeout``, default 120): how long a TCP connect may take, and how long a client
  waits for the server's first packet before it moves on to the next remote (UDP and TCP).
* ``connect-retry-max N``: each remote is tried N times, then the client exits (0: forever).
* ``tcp-nodelay`` on a server sets TCP_NODELAY on its connections and pushes
  ``socket-flags TCP_NODELAY`` (helper.c: helper_tcp_nodelay); on a client it sets the flag.
* ``tcp-queue-limit N``: packets queued towards one TCP peer before new ones are dropped.
* ``<connection>`` blocks: each is one remote with its own connection options (``remote``,
  ``proto``, ports, binding, ``connect-retry``, ``connect-timeout``/``server-poll-timeout``,
  ``mssfix``, ``explicit-exit-notify``, ``float``), starting from the global values as they
  stand where the block is (stock: ``sub.ce = options->ce``). With blocks in a file, plain
  ``remote`` lines are ignored, as stock ignores them (a note says so). Other options inside a
  block are errors, as in stock.
* ``http-proxy HOST PORT [AUTHFILE [basic|none]]`` (+ ``<http-proxy-user-pass>``,
  ``http-proxy-option VERSION|AGENT|CUSTOM-HEADER``): TCP remotes are reached through an HTTP
  CONNECT proxy as stock does it (proxy.c); the remote's name goes to the proxy unresolved.
  ``auto``/``auto-nct``, NTLM and Digest are refused, as are ``port-share`` and
  ``socks-proxy``, with a message saying so: a profile that needs them cannot work without
  them, so skipping one silently would only fail later and less clearly.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from tunnel.config.apply import apply_directive
from tunnel.config.diagnostics import OptionProblem, config_error, quote
from tunnel.config.files import resolve_path
from tunnel.config.lexer import Directive, lex_config
from tunnel.config.model import ConnectionProfile, HttpProxy, Remote, TunnelConfig, is_tcp
from tunnel.config.registry import ParseContext, flag_option, number_option, option
from tunnel.config.values import parse_choice, parse_host, parse_port

__all__: list[str] = []

_INT_MAX = 2**31 - 1

number_option("connect-timeout", "connect_timeout", 1, _INT_MAX)
number_option("server-poll-timeout", "connect_timeout", 1, _INT_MAX)
number_option("connect-retry-max", "connect_retry_tries", 0, _INT_MAX)
number_option("tcp-queue-limit", "tcp_queue_limit", 1, _INT_MAX)
flag_option("tcp-nodelay", "tcp_nodelay")


@option("socket-flags", "FLAG...")
def _socket_flags(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    for flag in d.args:
        if flag != "TCP_NODELAY":
            raise OptionProblem(
                f"option 'socket-flags': only TCP_NODELAY is supported, got {quote(flag)}"
            )
    cfg.socket_flags_nodelay = True


def _refuse(name: str, why: str) -> None:
    def handle(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
        raise OptionProblem(f"option {quote(name)} is not supported: {why}")

    option(name, any_arity=True)(handle)


_refuse(
    "port-share",
    "this server does not proxy non-OpenVPN connections to another server; give the web "
    "server its own port (or address) instead",
)
_SOCKS = (
    "connecting through a SOCKS proxy is not implemented; use 'http-proxy' if the network "
    "has one, or connect directly"
)
for _name in ("socks-proxy", "socks-proxy-retry"):
    _refuse(_name, _SOCKS)
_refuse("http-proxy-override", "it is a management-interface feature this client does not offer")
_refuse("http-proxy-retry", "removed in OpenVPN 2.4 (proxy retries are ordinary connect retries)")
_refuse("http-proxy-timeout", "removed from OpenVPN; 'connect-timeout' bounds the connect")


def _proxy(cfg: TunnelConfig) -> HttpProxy:
    if cfg.http_proxy is None:
        raise OptionProblem("needs an 'http-proxy HOST PORT' line before it")
    return cfg.http_proxy


def _read_user_pass(text: str, where: str) -> tuple[str, str]:
    lines = text.splitlines()
    if len(lines) < 2 or not lines[0]:
        raise OptionProblem(f"{where} must hold a username line and a password line")
    return lines[0], lines[1]


@option("http-proxy", "HOST PORT [AUTHFILE|auto|auto-nct] [none|basic|ntlm|digest]")
def _http_proxy(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    """proxy.c: an HTTP CONNECT proxy for TCP links; Basic auth from a file (or an inline
    <http-proxy-user-pass>). 'auto', NTLM and Digest are refused: they need a dialogue with
    the proxy (or the user) this client does not carry."""
    host, port = parse_host(d, 0), parse_port(d, 1)
    auth: str = "none"
    username = password = None
    if len(d.args) > 2:
        if d.args[2] in ("auto", "auto-nct"):
            raise OptionProblem(
                f"option 'http-proxy': {quote(d.args[2])} (asking for the proxy's credentials "
                "when it wants them) is not supported; give an AUTHFILE with 'basic'"
            )
        auth = parse_choice(d, 3, ("none", "basic", "ntlm", "digest")) if len(d.args) > 3 \
            else "basic"
        if auth in ("ntlm", "digest"):
            raise OptionProblem(f"option 'http-proxy': {auth} authentication is not "
                                "supported; only 'basic' (or 'none')")
        if auth == "basic" and d.args[2] != "stdin":
            path = resolve_path(ctx.base_dir, d.args[2])
            try:
                text = path.read_text()
            except OSError as exc:
                raise OptionProblem(f"cannot read the 'http-proxy' auth file {path}: "
                                    f"{exc.strerror or exc}") from None
            username, password = _read_user_pass(text, f"the 'http-proxy' auth file {path}")
        elif auth == "basic":
            raise OptionProblem("option 'http-proxy': reading the credentials from stdin is "
                                "not supported; give a file or an <http-proxy-user-pass> block")
    cfg.http_proxy = HttpProxy(host, port, "basic" if auth == "basic" else "none",
                               username, password)


@option("http-proxy-user-pass", "FILE", inline=True)
def _http_proxy_user_pass(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    proxy = _proxy(cfg)
    if d.inline is not None:
        username, password = _read_user_pass(d.inline, "the inline <http-proxy-user-pass>")
    else:
        path = resolve_path(ctx.base_dir, d.args[0])
        try:
            text = path.read_text()
        except OSError as exc:
            raise OptionProblem(f"cannot read the 'http-proxy-user-pass' file {path}: "
                                f"{exc.strerror or exc}") from None
        username, password = _read_user_pass(text, f"the 'http-proxy-user-pass' file {path}")
    cfg.http_proxy = replace(proxy, auth="basic", username=username, password=password)


@option("http-proxy-option", "VERSION|AGENT|CUSTOM-HEADER ...", any_arity=True)
def _http_proxy_option(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    proxy = _proxy(cfg)
    kind = d.args[0] if d.args else ""
    if kind == "VERSION" and len(d.args) == 2:
        cfg.http_proxy = replace(proxy, version=parse_choice(d, 1, ("1.0", "1.1")))
    elif kind == "AGENT" and len(d.args) == 2:
        cfg.http_proxy = replace(proxy, agent=d.args[1])
    elif kind == "CUSTOM-HEADER" and len(d.args) in (2, 3):
        value = d.args[2] if len(d.args) == 3 else ""
        cfg.http_proxy = replace(proxy, headers=(*proxy.headers, (d.args[1], value)))
    else:
        raise OptionProblem("option 'http-proxy-option' expects 'VERSION 1.0|1.1', "
                            "'AGENT NAME' or 'CUSTOM-HEADER NAME [VALUE]'")


# -- <connection> blocks ------------------------------------------------------------------

# What OpenVPN accepts inside a <connection> block (options.c: OPT_P_CONNECTION); the ones we
# do not implement at all are refused by their own handlers (or as unknown) as anywhere else.
_CONNECTION_OPTIONS = frozenset({
    "remote", "proto", "port", "lport", "rport", "local", "bind", "nobind", "connect-retry",
    "connect-timeout", "server-poll-timeout", "connect-retry-max", "float", "tun-mtu",
    "tun-mtu-extra", "tun-mtu-max", "link-mtu", "udp-mtu", "max-packet-size", "mtu-dynamic",
    "fragment", "mtu-disc", "mssfix", "explicit-exit-notify", "http-proxy", "http-proxy-option",
    "http-proxy-user-pass", "http-proxy-retry", "http-proxy-timeout", "socks-proxy",
    "socks-proxy-retry", "tls-crypt", "tls-crypt-v2", "tls-auth", "key-direction",
})


@option("connection", "", inline=True)
def _connection(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    """One connection profile: a copy of the connection options as they stand here, changed
    by the block's own lines (options.c: `sub.ce = options->ce`), with exactly one remote."""
    if d.inline is None:
        raise OptionProblem("option 'connection' must be an inline <connection> ... "
                            "</connection> block")
    sub = copy.copy(cfg)
    sub.option_lines = dict(cfg.option_lines)
    sub_ctx = ParseContext(
        source=ctx.source, base_dir=ctx.base_dir, ignore_unknown=ctx.ignore_unknown,
        forward_compatible=ctx.forward_compatible, mssfix_default=ctx.mssfix_default,
        topology_given=ctx.topology_given,
    )
    for inner in lex_config(d.inline, source=ctx.source):
        line = d.line + inner.line  # the body starts on the line after <connection>
        inner = Directive(line, inner.name, inner.args, inner.inline)
        if inner.name not in _CONNECTION_OPTIONS:
            raise config_error(
                ctx.source, line,
                f"option {quote(inner.name)} cannot be used inside a <connection> block "
                "(OpenVPN allows only connection options there; put it outside the block)",
            )
        if inner.name == "connect-retry-max":
            cfg.note_at(line, "'connect-retry-max' inside <connection> has no effect: OpenVPN "
                              "reads it only outside the blocks")
            continue
        apply_directive(sub, sub_ctx, inner)
    if len(sub_ctx.remotes) != 1:
        raise OptionProblem("each <connection> block must contain exactly one 'remote' line, "
                            f"this one has {len(sub_ctx.remotes)}")
    if sub.tun_mtu != cfg.tun_mtu:
        raise OptionProblem("a 'tun-mtu' inside <connection> that differs from the global one "
                            "is not supported (one device serves every connection)")
    pending = sub_ctx.remotes[0]
    profile = ConnectionProfile(
        line=d.line,
        connect_retry=sub.connect_retry,
        connect_retry_max=sub.connect_retry_max,
        connect_timeout=sub.connect_timeout,
        local=sub.local,
        lport=sub.lport,
        nobind=sub.nobind,
        asked_to_bind=sub.local is not None or "lport" in sub.option_lines,
        remote_float=sub.remote_float,
        tun_mtu=sub.tun_mtu,
        mssfix=sub.mssfix,
        mssfix_mode=sub.mssfix_mode,
        mssfix_default=sub_ctx.mssfix_default,
        explicit_exit_notify=sub.explicit_exit_notify,
        http_proxy=sub.http_proxy,
    )
    proto = pending.proto or sub.proto
    if is_tcp(proto) and sub.proto_tcp_role == "server" and pending.proto is None:
        raise OptionProblem("a <connection> is always connected to: use 'proto tcp-client' "
                            "(or 'tcp') in it, not tcp-server")
    ctx.connections.append(Remote(pending.host, pending.port or sub.rport, proto, profile))
