"""The option table, control-channel wrap half: tls-auth, tls-crypt, tls-crypt-v2, key-direction.

As stock (`options.c`): `tls-auth FILE [DIR]` or an inline `<tls-auth>` block (direction from
`key-direction`), `tls-crypt FILE` / `<tls-crypt>`, `tls-crypt-v2 FILE` / `<tls-crypt-v2>`; at
most one of the three. Key files are read and checked here, so a truncated or non-hex key is
one `config:line: option 'tls-auth': keyfile:line: reason` error before anything starts.
"""

from __future__ import annotations

from tunnel.config.diagnostics import OptionProblem, quote
from tunnel.config.files import read_text
from tunnel.config.lexer import Directive
from tunnel.config.model import TunnelConfig
from tunnel.config.registry import ParseContext, option
from tunnel.config.values import parse_choice, parse_int
from tunnel.protocol.wrap.keyfile import KeyFileError, parse_static_key
from tunnel.protocol.wrap.v2keys import CLIENT_PEM, SERVER_PEM, ClientKey, ServerKey

__all__: list[str] = []

_INLINE = "[inline]"


def _set_wrap(cfg: TunnelConfig, d: Directive, kind: str) -> None:
    if cfg.control_wrap is not None and cfg.control_wrap != kind:
        raise OptionProblem(
            f"option {quote(d.name)} cannot be combined with '{cfg.control_wrap}' "
            "(one control-channel wrap at a time)"
        )
    cfg.control_wrap = kind  # type: ignore[assignment]


def _read_static_key(d: Directive, ctx: ParseContext) -> tuple[bytes, str]:
    text, source = read_text(d, ctx.base_dir)
    try:
        return parse_static_key(text), source
    except KeyFileError as exc:
        where = f"inline <{d.name}> block" if source == "inline" else source
        if exc.line:
            where += f":{d.line + exc.line if source == 'inline' else exc.line}"
        raise OptionProblem(f"option {quote(d.name)}: {where}: {exc.reason}") from None


def _direction(d: Directive, index: int) -> int:
    return int(parse_choice(d, index, ("0", "1")))


@option("tls-auth", "FILE [DIRECTION]", inline=True)
def _tls_auth(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    _set_wrap(cfg, d, "tls-auth")
    if d.inline is None and d.args[0] == _INLINE:
        # `tls-auth [inline] DIR`: the key is the <tls-auth> block, wherever it is.
        if len(d.args) > 1:
            cfg.tls_auth_direction = _direction(d, 1)
        return
    cfg.control_key, cfg.control_key_source = _read_static_key(d, ctx)
    if d.inline is None and len(d.args) > 1:
        cfg.tls_auth_direction = _direction(d, 1)


@option("key-direction", "0|1")
def _key_direction(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.key_direction = _direction(d, 0)


@option("tls-crypt", "FILE", inline=True)
def _tls_crypt(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    _set_wrap(cfg, d, "tls-crypt")
    if d.inline is None and d.args[0] == _INLINE:
        return
    cfg.control_key, cfg.control_key_source = _read_static_key(d, ctx)


@option("tls-crypt-v2", "FILE [force-cookie|allow-noncookie]", inline=True)
def _tls_crypt_v2(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    _set_wrap(cfg, d, "tls-crypt-v2")
    if d.inline is None and len(d.args) > 1:
        parse_choice(d, 1, ("force-cookie", "allow-noncookie"))
    # Stock's default is allow-noncookie: pre-2.6 clients get state before the HMAC cookie.
    # We keep none, so we always behave as force-cookie; say so once.
    cfg.note("tls-crypt-v2", "tls-crypt-v2 clients older than 2.6 (no early negotiation) are "
             "refused, as with 'force-cookie': no state is kept before the HMAC cookie")
    if d.inline is None and d.args[0] == _INLINE:
        return
    text, source = read_text(d, ctx.base_dir)
    where = f"inline <{d.name}> block" if source == "inline" else source
    kind: type[ServerKey] | type[ClientKey] = ServerKey if SERVER_PEM in text else ClientKey
    if SERVER_PEM not in text and CLIENT_PEM not in text:
        raise OptionProblem(
            f"option 'tls-crypt-v2': {where} holds no '-----BEGIN {SERVER_PEM}-----' or "
            f"'-----BEGIN {CLIENT_PEM}-----' block"
        )
    try:
        cfg.tls_crypt_v2_key = kind.parse(text)
    except KeyFileError as exc:
        if exc.line:
            where += f":{d.line + exc.line if source == 'inline' else exc.line}"
        raise OptionProblem(f"option 'tls-crypt-v2': {where}: {exc.reason}") from None
    cfg.control_key_source = source


@option("tls-crypt-v2-verify", "CMD")
def _tls_crypt_v2_verify(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.tls_crypt_v2_verify = d.args[0]


@option("tls-crypt-v2-max-age", "DAYS")
def _tls_crypt_v2_max_age(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
    cfg.tls_crypt_v2_max_age = parse_int(d, 0, 1, 2**31 - 1)
