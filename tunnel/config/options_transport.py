"""The option table, transport half: TCP knobs, connection retries and timeouts, proxies.

Semantics follow OpenVPN 2.6 ``options.c``:

* ``connect-timeout N`` and ``server-poll-timeout N`` set the same value (OpenVPN's
  ``ce.connect_timeout``, default 120): how long a TCP connect may take, and how long a client
  waits for the server's first packet before it moves on to the next remote (UDP and TCP).
* ``connect-retry-max N``: each remote is tried N times, then the client exits (0: forever).
* ``tcp-nodelay`` on a server sets TCP_NODELAY on its connections and pushes
  ``socket-flags TCP_NODELAY`` (helper.c: helper_tcp_nodelay); on a client it sets the flag.
* ``tcp-queue-limit N``: packets queued towards one TCP peer before new ones are dropped.
* ``port-share``, ``http-proxy`` and ``socks-proxy`` are refused with a message saying so; a
  profile that needs a proxy to reach its server cannot work without one, so skipping it
  silently would only fail later and less clearly.
"""

from __future__ import annotations

from tunnel.config.diagnostics import OptionProblem, quote
from tunnel.config.lexer import Directive
from tunnel.config.model import TunnelConfig
from tunnel.config.registry import ParseContext, flag_option, number_option, option

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
_PROXY = (
    "connecting through a proxy is not implemented; connect directly (a 'remote ... tcp' "
    "the network lets through), or run the stock openvpn for this profile"
)
for _name in ("http-proxy", "socks-proxy", "http-proxy-option", "http-proxy-user-pass",
              "http-proxy-override", "http-proxy-retry", "http-proxy-timeout",
              "socks-proxy-retry"):
    _refuse(_name, _PROXY)
