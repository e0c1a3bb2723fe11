"""Reading an OpenVPN config file into a validated TunnelConfig.

``load_config(path)`` reads a file; ``parse_config(text, source=..., base_dir=...)`` parses text
whose relative file names (ca, cert, key, ...) are resolved against ``base_dir``. Both raise
:class:`tunnel.protocol.errors.ConfigError` with a one-line ``file:line: ...`` message, and
nothing else, whatever the input. The steps: lex (``lexer.py``), apply each directive through
the option table (``options.py``) in file order, expand OpenVPN's helper directives
(``expand.py``), then check cross-option consistency (``checks.check_config``).
"""

from __future__ import annotations

import os
from pathlib import Path

import tunnel.config.options  # noqa: F401  (importing it fills the option table)
from tunnel.config.apply import apply_directive
from tunnel.config.checks import check_config
from tunnel.config.diagnostics import config_error
from tunnel.config.expand import expand
from tunnel.config.lexer import check_line_length, count_lines, lex_config
from tunnel.config.model import TunnelConfig
from tunnel.config.registry import ParseContext

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
        apply_directive(cfg, ctx, directive)
    expand(cfg, ctx)
    check_config(cfg)
    return cfg
