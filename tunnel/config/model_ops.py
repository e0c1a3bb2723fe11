"""OpsOptions: the operational options of a TunnelConfig (issue 11, items 4-8).

Kept in their own dataclass (``TunnelConfig.ops``) because they are many and mostly
independent of the data path: process handling (syslog, daemon, writepid), server operations
(crl-verify, client-config-dir, ifconfig-pool-persist), TLS knobs handed to OpenSSL, hook
scripts and client routing. The handlers that fill it are in ``options_ops.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["HOOKS", "OpsOptions", "PullFilter"]

# The script hooks OpenVPN 2.6 runs, by option name (each takes one command line).
HOOKS = (
    "up", "down", "route-up", "route-pre-down", "tls-verify", "client-connect",
    "client-disconnect", "learn-address", "ipchange",
)

PullFilter = tuple[Literal["accept", "ignore", "reject"], str]


@dataclass(slots=True)
class OpsOptions:
    # -- item 8: options the generators write -----------------------------------------------
    ping_timer_rem: bool = False
    tun_mtu_extra: int | None = None
    push_peer_info: bool = False  # also `setenv PUSH_PEER_INFO`
    disable_occ: bool = False
    tun_ipv6: bool = False
    machine_readable_output: bool = False
    route_delay: tuple[int, int] | None = None  # (seconds, window); None: not given
    setenv: dict[str, str] = field(default_factory=dict)  # handed to every script

    # -- process ---------------------------------------------------------------------------
    syslog: str | None = None  # program name for syslog, "openvpn" by default; None: not used
    daemon: str | None = None  # `daemon [NAME]`: program name; None: stay in the foreground
    writepid: Path | None = None
    dev_node: str | None = None
    persist_local_ip: bool = False
    persist_remote_ip: bool = False

    # -- server operations -----------------------------------------------------------------
    crl_verify: Path | None = None  # a file, or a directory with crl_is_dir
    crl_is_dir: bool = False
    crl_inline: str | None = field(default=None, repr=False)
    client_config_dir: Path | None = None
    ccd_exclusive: bool = False
    ifconfig_pool_persist: Path | None = None
    ifconfig_pool_persist_seconds: int = 600

    # -- TLS knobs -------------------------------------------------------------------------
    tls_cipher: str | None = None  # as written (OpenVPN or OpenSSL names)
    tls_ciphersuites: str | None = None
    tls_groups: str | None = None
    ecdh_curve: str | None = None
    capath: Path | None = None
    pkcs12: bytes | None = field(default=None, repr=False)
    pkcs12_source: str | None = None
    ns_cert_type: Literal["server", "client"] | None = None
    remote_cert_ku: list[int] = field(default_factory=list)
    remote_cert_eku: str | None = None
    peer_fingerprints: list[bytes] = field(default_factory=list)  # SHA-256 digests
    tls_exit: bool = False

    # -- scripts ---------------------------------------------------------------------------
    scripts: dict[str, str] = field(default_factory=dict)  # hook option -> command line
    up_restart: bool = False
    up_delay: bool = False
    down_pre: bool = False

    # -- client routing --------------------------------------------------------------------
    redirect_gateway: tuple[str, ...] | None = None  # flags as written (def1, bypass-dhcp, ...)
    route_nopull: bool = False
    route_noexec: bool = False
    pull_filters: list[PullFilter] = field(default_factory=list)
