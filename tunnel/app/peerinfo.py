"""The client's extra peer-info lines (`ssl.c: push_peer_info()`, `push-peer-info`).

A pull client always sends stock's level-2 details (built in tunnel/protocol/messages.py) plus
any `setenv IV_GUI_VER` / `setenv IV_SSO`. `push-peer-info` (or the old `setenv PUSH_PEER_INFO`)
raises it to level 3: IV_HWADDR (the MAC of the default route's interface, where it has one),
IV_SSL (the TLS library's version string), IV_PLAT_VER (the kernel release, `uname -r`), and
every `setenv UV_*` plus a `setenv IV_PLAT_VER` as they are. Stock walks its env list newest
first, so the setenv lines come in reverse config order here too. (`setenv-safe` prefixes its
names with OPENVPN_, so it never yields a UV_ line in stock either.)
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path

from tunnel.config import TunnelConfig

__all__ = ["default_route_hwaddr", "peer_info_extra"]

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_NAME = re.compile(r"[A-Za-z0-9_]+")  # misc.c: validate_peer_info_line()
_ALWAYS = ("IV_GUI_VER", "IV_SSO")  # copied at level 2 already


def default_route_hwaddr(proc_route: Path = Path("/proc/net/route"),
                         sys_net: Path = Path("/sys/class/net")) -> str | None:
    """The MAC address of the IPv4 default route's interface (lowest metric), as stock's
    get_default_gateway() finds it; None without a default route or for a device without one
    (a TUN device has no link-layer address)."""
    try:
        rows = proc_route.read_text().splitlines()[1:]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for row in rows:
        fields = row.split()
        if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
            continue
        flags, metric = int(fields[3], 16), int(fields[6])
        if flags & 1 and (best is None or metric < best[0]):  # RTF_UP
            best = (metric, fields[0])
    if best is None:
        return None
    try:
        mac = (sys_net / best[1] / "address").read_text().strip().lower()
    except OSError:
        return None
    return mac if _MAC.fullmatch(mac) else None


def peer_info_extra(cfg: TunnelConfig) -> list[str]:
    """The lines appended to the client's peer-info for this config."""
    full = cfg.ops.push_peer_info
    lines: list[str] = []
    if full:
        hwaddr = default_route_hwaddr()
        if hwaddr is not None:
            lines.append(f"IV_HWADDR={hwaddr}")
        lines.append(f"IV_SSL={ssl.OPENSSL_VERSION}")
        lines.append(f"IV_PLAT_VER={os.uname().release}")
    for name, value in reversed(list(cfg.ops.setenv.items())):
        wanted = name in _ALWAYS or (full and (name.startswith("UV_") or name == "IV_PLAT_VER"))
        if wanted and _NAME.fullmatch(name) and "\n" not in value:
            lines.append(f"{name}={value}")
    return lines
