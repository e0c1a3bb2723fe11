"""Username/password options (issue 11 item 1): the client's credentials, the server's check.

* ``auth-user-pass [FILE]`` (or an inline ``<auth-user-pass>`` block): username on the first
  line, password on the second; without a file (or with a one-line file) the missing part is
  asked on the terminal when the tunnel starts (``tunnel/app/credentials.py``). The text is
  read when the credentials are needed, never stored in a note or a repr.
* ``auth-retry none|nointeract|interact``: what the client does after AUTH_FAILED (exit, or
  reconnect with the same credentials; ``interact`` asks again on the terminal when it can).
* ``auth-user-pass-verify CMD via-file|via-env`` (server, ``script-security 2``): the command
  decides each client's username/password by its exit status (``tunnel/app/auth_verify.py``).
* ``verify-client-cert none|optional|require`` and ``username-as-common-name``: stock's meaning,
  and stock's rule that both need an authentication method besides the certificate.
"""

from __future__ import annotations

from tunnel.config.diagnostics import OptionProblem
from tunnel.config.files import resolve_path
from tunnel.config.lexer import Directive
from tunnel.config.model import TunnelConfig
from tunnel.config.registry import ParseContext, flag_option, option
from tunnel.config.values import parse_choice

__all__: list[str] = []


@option("auth-user-pass", "[FILE]", inline=True)
def _auth_user_pass(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if d.inline is not None:
        cfg.auth_user_pass = "inline"
        cfg.auth_user_pass_inline = d.inline
    elif d.args and d.args[0] != "stdin":  # `auth-user-pass stdin` is the terminal too (2.6)
        cfg.auth_user_pass = str(resolve_path(ctx.base_dir, d.args[0]))
    else:
        cfg.auth_user_pass = ""  # ask on the terminal


@option("auth-retry", "none|nointeract|interact")
def _auth_retry(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.auth_retry = parse_choice(d, 0, ("none", "nointeract", "interact"))


@option("auth-user-pass-verify", "CMD via-file|via-env")
def _auth_user_pass_verify(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    if not d.args[0].strip():
        raise OptionProblem("option 'auth-user-pass-verify' needs a command")
    method = parse_choice(d, 1, ("via-file", "via-env"))
    cfg.auth_user_pass_verify = (d.args[0], method)


@option("verify-client-cert", "none|optional|require")
def _verify_client_cert(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.verify_client_cert = parse_choice(d, 0, ("none", "optional", "require"))


flag_option("username-as-common-name", "username_as_common_name")
