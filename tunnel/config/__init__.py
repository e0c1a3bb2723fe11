"""OpenVPN config-file syntax -> a typed, validated :class:`TunnelConfig`.

    from tunnel.config import load_config
    cfg = load_config("client.ovpn")        # raises ConfigError("client.ovpn:12: ...")
    for item in cfg.ignored: log.warning("%s", item)
    for note in cfg.notes: log.info("%s", note)

Layout: ``lexer.py`` (lines -> directives), ``registry.py`` + ``options.py`` +
``options_crypto.py`` (the option table), ``values.py``/``files.py``/``ciphers.py`` (argument
parsing), ``expand.py`` (OpenVPN's helper directives), ``model.py`` + ``checks.py`` (the result
and its consistency checks), ``parser.py`` (the whole pipeline), ``diagnostics.py`` (messages).
"""

from __future__ import annotations

from tunnel.config.ciphers import DEFAULT_DATA_CIPHERS, SUPPORTED_DATA_CIPHERS
from tunnel.config.model import (
    AddressPool,
    IgnoredOption,
    Remote,
    Route,
    RouteIPv6,
    TunnelConfig,
)
from tunnel.config.options import SUPPORTED_OPTIONS
from tunnel.config.parser import load_config, parse_config

__all__ = [
    "DEFAULT_DATA_CIPHERS",
    "SUPPORTED_DATA_CIPHERS",
    "SUPPORTED_OPTIONS",
    "AddressPool",
    "IgnoredOption",
    "Remote",
    "Route",
    "RouteIPv6",
    "TunnelConfig",
    "load_config",
    "parse_config",
]
