"""One config directive into a TunnelConfig through the option table (``registry.OPTIONS``).

Apart from parser.py so that an option whose value is itself a list of directives (a
``<connection>`` block, ``options_transport.py``) applies them the same way without importing
the parser (which imports every option module).
"""

from __future__ import annotations

from tunnel.config.diagnostics import OptionProblem, config_error, quote
from tunnel.config.lexer import Directive
from tunnel.config.model import IgnoredOption, TunnelConfig
from tunnel.config.registry import OPTIONS, ParseContext, check_arity
from tunnel.config.stock_options import STOCK_OPTION_NAMES

__all__ = ["apply_directive"]


def _unwrap_setenv_opt(d: Directive) -> Directive | None:
    """``setenv opt NAME ARGS`` -> ``NAME ARGS`` (add_option(): unknown NAME only warns)."""
    if d.name != "setenv" or d.args[:1] != ("opt",):
        return None
    if len(d.args) < 2:
        return Directive(d.line, "setenv opt", (), d.inline)  # OpenVPN's own placeholder name
    return Directive(d.line, d.args[1], d.args[2:], d.inline)


def _skip_reason(ctx: ParseContext, name: str, via_setenv_opt: bool) -> str | None:
    if name in ctx.ignore_unknown:
        return "ignore-unknown-option"
    if via_setenv_opt:
        return "setenv opt"
    if ctx.forward_compatible:
        return "setenv FORWARD_COMPATIBLE 1"
    return None


def apply_directive(cfg: TunnelConfig, ctx: ParseContext, d: Directive) -> None:
    """One directive into `cfg` (also used for the lines of a <connection> block)."""
    _apply(cfg, ctx, d)


def _apply(cfg: TunnelConfig, ctx: ParseContext, d: Directive) -> None:
    unwrapped = _unwrap_setenv_opt(d)
    if unwrapped is not None:
        d = unwrapped
    spec = OPTIONS.get(d.name)
    if spec is None:
        reason = _skip_reason(ctx, d.name, unwrapped is not None)
        if d.name in STOCK_OPTION_NAMES:
            # Stock applies an option it knows whatever ignore-unknown-option or
            # FORWARD_COMPATIBLE say; skipping it could drop a certificate check, a credential
            # or a change of wire format, so an OpenVPN option we do not implement is an error.
            raise config_error(
                ctx.source,
                d.line,
                f"unsupported option {quote(d.name)}: OpenVPN applies it, so it is never "
                "skipped (ignore-unknown-option, 'setenv opt' and FORWARD_COMPATIBLE only cover "
                "options OpenVPN does not know)",
            )
        if reason is None:
            raise config_error(
                ctx.source,
                d.line,
                f"unsupported option {quote(d.name)} (use 'ignore-unknown-option {d.name}' to "
                "skip it)",
            )
        cfg.ignored.append(IgnoredOption(ctx.source, d.line, d.name, reason))
        return
    cfg.option_lines[d.name] = d.line
    try:
        check_arity(spec, d)
        spec.handler(cfg, d, ctx)
    except OptionProblem as problem:
        raise config_error(ctx.source, d.line, str(problem)) from None
