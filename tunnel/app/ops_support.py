"""Options the parser knows (issue 11, part B) that this runtime does not apply yet.

Each one is refused at start with its line, because skipping it would change what the user
asked for: a tls-verify or client-connect script can refuse clients, pull-filter and
route-nopull keep pushed options out, peer-fingerprint replaces the CA check. They move out of
this list as they are implemented.
"""

from __future__ import annotations

from tunnel.config import TunnelConfig

__all__ = ["OPS_REFUSED", "refuse_unapplied"]

# Empty since route-pre-down, ipchange and up-delay were done (issue 11); kept for the next one.
_REASONS: dict[str, str] = {}
OPS_REFUSED: frozenset[str] = frozenset(_REASONS)


def refuse_unapplied(cfg: TunnelConfig) -> None:
    """ConfigError at the first option of OPS_REFUSED the config uses."""
    for option in sorted(cfg.option_lines, key=cfg.option_lines.__getitem__):
        reason = _REASONS.get(option)
        if reason is None:
            continue
        raise cfg.error(option, f"option {option!r} is not supported here: {reason}")
