"""tunnel/config/apply.py: one directive through the option table, as the parser applies it."""

from __future__ import annotations

from pathlib import Path

import pytest

import tunnel.config.options  # noqa: F401  (fills the option table)
from tunnel.config.apply import apply_directive
from tunnel.config.lexer import Directive
from tunnel.config.model import TunnelConfig
from tunnel.config.registry import ParseContext
from tunnel.protocol.errors import ConfigError


def _fresh() -> tuple[TunnelConfig, ParseContext]:
    return TunnelConfig(source="t.conf", base_dir=Path(".")), ParseContext("t.conf", Path("."))


def test_a_known_option_is_applied_and_its_line_recorded() -> None:
    cfg, ctx = _fresh()
    apply_directive(cfg, ctx, Directive(7, "verb", ("5",)))
    assert cfg.verb == 5
    assert cfg.option_lines["verb"] == 7


def test_setenv_opt_unwraps_a_known_option() -> None:
    cfg, ctx = _fresh()
    apply_directive(cfg, ctx, Directive(3, "setenv", ("opt", "verb", "6")))
    assert cfg.verb == 6


@pytest.mark.parametrize("name", [
    "some-future-option",
    "fragment",  # stock knows it and we do not implement it
])
def test_unknown_and_unimplemented_options_are_errors_at_their_line(name: str) -> None:
    cfg, ctx = _fresh()
    with pytest.raises(ConfigError, match=rf"^t\.conf:4: unsupported option '{name}'"):
        apply_directive(cfg, ctx, Directive(4, name, ("x",)))


def test_only_options_stock_does_not_know_are_skipped() -> None:
    cfg, ctx = _fresh()
    ctx.ignore_unknown.add("some-future-option")
    ctx.forward_compatible = True
    apply_directive(cfg, ctx, Directive(5, "some-future-option", ("x",)))
    assert [(i.line, i.name) for i in cfg.ignored] == [(5, "some-future-option")]
    with pytest.raises(ConfigError, match="OpenVPN applies it, so it is never skipped"):
        apply_directive(cfg, ctx, Directive(6, "fragment", ("1300",)))


def test_a_handler_problem_is_located_at_the_directive() -> None:
    cfg, ctx = _fresh()
    with pytest.raises(ConfigError, match=r"^t\.conf:9: "):
        apply_directive(cfg, ctx, Directive(9, "verb", ("loud",)))
