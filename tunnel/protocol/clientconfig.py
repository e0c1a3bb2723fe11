"""What the server knows about one client beyond its handshake: client-config-dir, a
client-connect script's output, a management client-auth body (stock's per-instance options)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["ClientConfig"]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a client-config-dir file (or a client-connect script) says about one client."""

    disable: bool = False
    push_reset: bool = False
    push: tuple[str, ...] = ()
    ifconfig_push: ipaddress.IPv4Address | None = None
    iroutes: tuple[ipaddress.IPv4Network, ...] = ()

    def then(self, later: ClientConfig) -> ClientConfig:
        """This config with `later` applied after it (a client-auth body after the ccd file):
        flags add up, pushes and iroutes append, a later ifconfig-push wins."""
        return ClientConfig(
            self.disable or later.disable, self.push_reset or later.push_reset,
            self.push + later.push, later.ifconfig_push or self.ifconfig_push,
            self.iroutes + later.iroutes)
