"""The shape of the option table: OptionSpec, the parse-time context, and how entries are made.

The table itself lives in ``options.py`` (link, device, addresses, keepalive, process) and
``options_tls.py`` (TLS, ciphers, compression, and the security options we refuse). Each entry
is declared with a usage string such as ``"HOST [PORT] [PROTO]"``; its arity is read from that
string, so the message for a wrong number of arguments and the check itself cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunnel.config.diagnostics import OptionProblem, quote
from tunnel.config.lexer import Directive
from tunnel.config.model import Proto, Remote, TunnelConfig
from tunnel.config.values import parse_int

__all__ = [
    "OPTIONS",
    "Handler",
    "OptionSpec",
    "ParseContext",
    "PendingRemote",
    "check_arity",
    "flag_option",
    "number_option",
    "option",
]


@dataclass(frozen=True, slots=True)
class PendingRemote:
    """A `remote` line before `port`/`rport`/`proto` (which may come later) are known."""

    line: int
    host: str
    port: int | None
    proto: Proto | None


@dataclass(slots=True)
class ParseContext:
    """State that only matters while one file is being read."""

    source: str
    base_dir: Path
    ignore_unknown: set[str] = field(default_factory=set)
    forward_compatible: bool = False  # `setenv FORWARD_COMPATIBLE 1`: unknown options skipped
    mssfix_default: bool = True  # no `mssfix N` seen (or a bare `mssfix` reset it)
    topology_given: bool = False
    remotes: list[PendingRemote] = field(default_factory=list)
    # <connection> blocks, in file order: each is one remote with its own options.
    connections: list[Remote] = field(default_factory=list)


Handler = Callable[[TunnelConfig, Directive, ParseContext], None]


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    usage: str  # e.g. "HOST [PORT] [PROTO]"; "" for options without arguments
    min_args: int
    max_args: int | None  # None: any number
    handler: Handler
    inline: bool = False  # may be given as an inline <name>...</name> block


OPTIONS: dict[str, OptionSpec] = {}


def _arity(usage: str) -> tuple[int, int | None]:
    words = re.findall(r'"[^"]*"|\S+', usage)  # a quoted phrase is one argument
    required = sum(1 for word in words if not word.startswith("["))
    # "OPTION..." or "[OPTION...]" repeat; "CIPHER[:CIPHER...]" is still one argument.
    if any(word.endswith("...") or (word[0] == "[" and word.endswith("...]")) for word in words):
        return required, None
    return required, len(words)


def option(
    name: str,
    usage: str = "",
    *,
    inline: bool = False,
    any_arity: bool = False,
) -> Callable[[Handler], Handler]:
    """Register a handler for ``name``; ``any_arity`` skips the argument-count check."""

    def register(handler: Handler) -> Handler:
        if name in OPTIONS:
            raise RuntimeError(f"option {name!r} registered twice")
        low, high = (0, None) if any_arity else _arity(usage)
        OPTIONS[name] = OptionSpec(name, usage, low, high, handler, inline)
        return handler

    return register


def _require_field(field_name: str) -> None:
    # Catch a misspelt field when the table is built, not when someone uses the option.
    if field_name not in TunnelConfig.__dataclass_fields__:
        raise RuntimeError(f"TunnelConfig has no field {field_name!r}")


def flag_option(name: str, field_name: str) -> None:
    """An option without arguments that sets a boolean field."""
    _require_field(field_name)

    def handle(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
        setattr(cfg, field_name, True)

    option(name)(handle)


def number_option(name: str, field_name: str, low: int, high: int | None = None) -> None:
    """An option with one whole-number argument stored in a field."""
    _require_field(field_name)

    def handle(cfg: TunnelConfig, d: Directive, ctx: ParseContext) -> None:
        setattr(cfg, field_name, parse_int(d, 0, low, high))

    option(name, "N")(handle)


def check_arity(spec: OptionSpec, d: Directive) -> None:
    """Raise OptionProblem if ``d`` has the wrong number of arguments (or an unwanted block)."""
    if d.inline is not None:
        if not spec.inline:
            raise OptionProblem(
                f"option {quote(d.name)} cannot be given as an inline <{d.name}> block"
            )
        return
    count = len(d.args)
    if spec.min_args <= count and (spec.max_args is None or count <= spec.max_args):
        return
    if spec.max_args == 0:
        raise OptionProblem(f"option {quote(d.name)} takes no arguments, got {count}")
    usage = f"{d.name} {spec.usage}"
    if spec.inline:
        usage += f" (or an inline <{d.name}> block)"
    raise OptionProblem(
        f"option {quote(d.name)} expects '{usage}', got {count} argument{'s' * (count != 1)}"
    )
