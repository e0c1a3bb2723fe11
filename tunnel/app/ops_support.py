"""Options the parser knows (issue 11, part B) that this runtime does not apply yet.

Each one is refused at start with its line, because skipping it would change what the user
asked for: a tls-verify or client-connect script can refuse clients, pull-filter and
route-nopull keep pushed options out, peer-fingerprint replaces the CA check. They move out of
this list as they are implemented.
"""

from __future__ import annotations

from tunnel.config import TunnelConfig
from tunnel.config.model_ops import HOOKS

__all__ = ["OPS_REFUSED", "refuse_unapplied"]

_REASONS: dict[str, str] = {
    **{hook: "scripts are not run by this version" for hook in HOOKS},
    "up-restart": "scripts are not run by this version",
    "up-delay": "scripts are not run by this version",
    "down-pre": "scripts are not run by this version",
    "peer-fingerprint": "certificate pinning without a CA is not supported yet",
    "tls-exit": "exiting on a TLS error is not supported yet",
    "redirect-gateway": "changing the default route is not supported yet",
    "route-nopull": "filtering pushed routes is not supported yet",
    "route-noexec": "leaving routes to a script is not supported yet",
    "pull-filter": "filtering pushed options is not supported yet",
}
OPS_REFUSED: frozenset[str] = frozenset(_REASONS)


def refuse_unapplied(cfg: TunnelConfig) -> None:
    """ConfigError at the first option of OPS_REFUSED the config uses."""
    for option in sorted(cfg.option_lines, key=cfg.option_lines.__getitem__):
        reason = _REASONS.get(option)
        if reason is None:
            continue
        raise cfg.error(option, f"option {option!r} is not supported here: {reason}")
