"""Reading an OpenVPN config file into a validated TunnelConfig.

``load_config(path)`` reads a file; ``parse_config(text, source=..., base_dir=...)`` parses text
whose relative file names (ca, cert, key, ...) are resolved against ``base_dir``. Both raise
:class:`tunnel.protocol.errors.ConfigError` with a one-line ``file:line: ...`` message, and
nothing else, whatever the input. The steps: lex (``lexer.py``), apply each directive through
the option table (``options.py``) in file order, expand OpenVPN's helper directives
(``expand.py``), then check cross-option consistency (``TunnelConfig.validate()``).
"""

from __future__ import annotations

import os
from pathlib import Path

from tunnel.config.diagnostics import OptionProblem, config_error, quote
from tunnel.config.expand import expand
from tunnel.config.lexer import Directive, check_line_length, count_lines, lex_config
from tunnel.config.model import IgnoredOption, TunnelConfig
from tunnel.config.options import OPTIONS, ParseContext
from tunnel.config.registry import check_arity
from tunnel.config.stock_options import STOCK_OPTION_NAMES

__all__ = ["load_config", "parse_config"]

# Far above any real config (even with inline certificate chains); a guard against being
# pointed at something that is not a config file.
_MAX_CONFIG_BYTES = 4 << 20


def load_config(path: str | os.PathLike[str]) -> TunnelConfig:
    """Read and validate the config file at ``path``; relative names are resolved next to it."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        # Line 0: the problem is the file as a whole.
        reason = exc.strerror or type(exc).__name__
        raise config_error(source, 0, f"cannot read the config file: {reason}") from None
    if len(data) > _MAX_CONFIG_BYTES:
        # Located where the limit was crossed: usually one absurd line, reported as such.
        start = data.rfind(b"\n", 0, _MAX_CONFIG_BYTES) + 1
        line = data.count(b"\n", 0, start) + 1
        end = data.find(b"\n", start)
        check_line_length(
            data[start : end if end >= 0 else len(data)].decode("utf-8", "surrogateescape"),
            newline=end >= 0, source=source, lineno=line,
        )
        raise config_error(
            source, line, f"the config file is larger than {_MAX_CONFIG_BYTES} bytes "
            f"(line {line} is where it crosses the limit; a config file is a few KB)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise config_error(source, line, "the config file is not UTF-8 text") from None
    return parse_config(text, source=source, base_dir=path.absolute().parent)


def parse_config(text: str, *, source: str, base_dir: Path) -> TunnelConfig:
    """Parse and validate config text; ``source`` names it in messages."""
    ctx = ParseContext(source=source, base_dir=Path(base_dir))
    cfg = TunnelConfig(source=source, base_dir=ctx.base_dir, end_line=count_lines(text))
    for directive in lex_config(text, source=source):
        _apply(cfg, ctx, directive)
    expand(cfg, ctx)
    cfg.validate()
    return cfg


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
