"""TunnelConfig: the typed, validated result of reading an OpenVPN config file.

Field values are the *effective* settings, as OpenVPN would run with them after its option
post-processing (``options_postprocess_mutate()``): ``keepalive`` already expanded into
``ping``/``ping_restart`` (and the pushed pair for a server), ``server`` already expanded into
``ifconfig``/``pool``, remotes carrying their resolved port and protocol, defaults filled in.
Times are whole seconds; 0 disables a timer, as in OpenVPN.

A TunnelConfig can also be built by hand (tests, the demo); `checks.check_config(cfg)`
afterwards applies the same cross-option checks the parser does (checks.py imports this
module, never the other way round).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tunnel.config.ciphers import DEFAULT_DATA_CIPHERS, SUPPORTED_DATA_CIPHERS
from tunnel.config.diagnostics import config_error, quote
from tunnel.config.mgmt_model import ManagementOptions
from tunnel.config.model_ops import OpsOptions
from tunnel.protocol.compress import NON_STUB_KINDS
from tunnel.protocol.errors import ConfigError

if TYPE_CHECKING:
    from tunnel.protocol.wrap.v2keys import ClientKey, ServerKey

__all__ = [
    "DEFAULT_DATA_CIPHERS",
    "SUPPORTED_DATA_CIPHERS",
    "AddressPool",
    "ConnectionProfile",
    "HttpProxy",
    "IgnoredOption",
    "Mode",
    "MssfixMode",
    "Proto",
    "Remote",
    "Role",
    "Route",
    "RouteIPv6",
    "TunnelConfig",
    "X509NameType",
    "is_tcp",
]

_HOST_NETMASK = IPv4Address("255.255.255.255")

Role = Literal["server", "client"]
# "server": one socket, many clients (OpenVPN --mode server, set by `server`/`server-ipv6`);
# "p2p": exactly one peer (OpenVPN's default mode, also with tls-server/tls-client).
Mode = Literal["server", "p2p"]
# "udp"/"tcp" = dual stack, "udp4"/"udp6"/"tcp4"/"tcp6" = one address family only. TCP's
# -client/-server suffix is implied by the role (checked against it in checks.py).
Proto = Literal["udp", "udp4", "udp6", "tcp", "tcp4", "tcp6"]


def is_tcp(proto: str) -> bool:
    return proto.startswith("tcp")
# How `mssfix` counts (OpenVPN mss.c): "mtu" = the whole outer IP datagram (the default 1492);
# "payload" = the OpenVPN UDP payload, without outer IP/UDP headers (`mssfix N`);
# "fixed" = the inner IP packet, so MSS = value - 40 (`mssfix N fixed`).
MssfixMode = Literal["mtu", "payload", "fixed"]
# verify-x509-name: whole subject DN, the CN only, or a CN prefix.
X509NameType = Literal["subject", "name", "name-prefix"]


@dataclass(frozen=True, slots=True)
class HttpProxy:
    """`http-proxy HOST PORT [AUTHFILE [basic|none]]` and its `http-proxy-option`s."""

    host: str
    port: int
    auth: Literal["none", "basic"] = "none"
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    version: str = "1.0"  # http-proxy-option VERSION
    agent: str | None = None  # http-proxy-option AGENT
    headers: tuple[tuple[str, str], ...] = ()  # http-proxy-option CUSTOM-HEADER


@dataclass(frozen=True, slots=True)
class ConnectionProfile:
    """The per-connection options of a `<connection>` block (OpenVPN's connection_entry), as
    they stood when the block ended: the global values at that point, then the block's own."""

    line: int  # of the <connection> tag
    connect_retry: int
    connect_retry_max: int
    connect_timeout: int
    local: str | None
    lport: int
    nobind: bool
    asked_to_bind: bool  # local/lport given (globally before the block, or in it)
    remote_float: bool
    tun_mtu: int
    mssfix: int | None
    mssfix_mode: MssfixMode
    mssfix_default: bool  # no `mssfix N` yet: the default follows tun-mtu
    explicit_exit_notify: int
    http_proxy: HttpProxy | None = None


@dataclass(frozen=True, slots=True)
class Remote:
    """One `remote` line, with the port and protocol it falls back to already filled in."""

    host: str  # IP literal or DNS name, not resolved here
    port: int
    proto: Proto
    # From a <connection> block: its own options; None for a plain `remote` line.
    profile: ConnectionProfile | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """`route NET [MASK] [GW] [METRIC]`.

    ``network`` is an address, or one of OpenVPN's special words ``vpn_gateway``,
    ``net_gateway``, ``remote_host``, or a DNS name, all resolved when the route is installed.
    ``gateway`` None means "the VPN gateway" (route-gateway / the server's tunnel address).
    """

    network: IPv4Address | str
    netmask: IPv4Address = _HOST_NETMASK
    gateway: IPv4Address | str | None = None
    metric: int | None = None

    @property
    def ip_network(self) -> IPv4Network | None:
        """The destination as a network, when ``network`` is an address literal."""
        if isinstance(self.network, IPv4Address):
            return IPv4Network(f"{self.network}/{self.netmask}")
        return None


@dataclass(frozen=True, slots=True)
class RouteIPv6:
    """`route-ipv6 NET/BITS [GW] [METRIC]` (host bits cleared, as OpenVPN does)."""

    network: IPv6Network
    gateway: IPv6Address | None = None
    metric: int | None = None


@dataclass(frozen=True, slots=True)
class AddressPool:
    """The IPv4 addresses a server hands to clients (`ifconfig-pool` or derived from `server`)."""

    start: IPv4Address
    end: IPv4Address
    netmask: IPv4Address | None = None  # what clients get with their address (topology subnet)

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1


@dataclass(frozen=True, slots=True)
class IgnoredOption:
    """An option we do not support that the config asked us to skip; log ``str(item)``."""

    source: str
    line: int
    name: str
    reason: str  # what allowed skipping it, e.g. "ignore-unknown-option"

    def __str__(self) -> str:
        what = f"ignoring unsupported option {quote(self.name)} ({self.reason})"
        return f"{self.source}:{self.line}: {what}"


@dataclass(slots=True)
class TunnelConfig:
    """Everything a tunnel peer needs from its config file. See the module docstring."""

    source: str = "<config>"  # the file name as given, used in every message
    base_dir: Path = field(default_factory=Path)  # where relative file names were resolved

    # -- role and mode ---------------------------------------------------------------------
    role: Role | None = None  # derived: server (tls-server) or client (tls-client)
    mode: Mode = "p2p"
    client: bool = False  # the `client` helper was given (= pull + tls-client)
    pull: bool = False  # accept options pushed by the server
    tls_server: bool = False
    tls_client: bool = False

    # -- tun device ------------------------------------------------------------------------
    dev: str | None = None  # as written: "tun" (kernel picks tunN) or a fixed name
    dev_type: str | None = None  # always "tun" once validated
    topology: str = "subnet"  # subnet, net30 or p2p (options.py)
    tun_mtu: int = 1500
    occ_mtu: int | None = None  # `tun-mtu N OCC`: the MTU announced in the options string
    mssfix: int | None = 1492  # None: MSS clamping disabled (`mssfix 0`)
    mssfix_mode: MssfixMode = "mtu"
    txqueuelen: int | None = None
    persist_tun: bool = False
    persist_key: bool = False

    # -- link ------------------------------------------------------------------------------
    proto: Proto = "udp"
    proto_tcp_role: Literal["client", "server"] | None = None  # `proto tcp-client|tcp-server`
    local: str | None = None  # local address to bind
    lport: int = 1194  # local port (`port` sets lport and rport)
    rport: int = 1194  # default port of remotes
    remotes: list[Remote] = field(default_factory=list)  # in file order
    remote_random: bool = False
    nobind: bool = False  # as written
    bind_local: bool = True  # derived: False with nobind, or for a pulling client without
    #                          local/lport (OpenVPN then uses a random source port)
    remote_float: bool = False  # `float`: accept the peer from a new address
    resolv_retry: int | None = None  # seconds; None = infinite (OpenVPN's default)
    connect_retry: int = 1
    connect_retry_max: int = 300
    # TCP transport and connection profiles (options_transport.py)
    connect_timeout: int = 120  # connect-timeout / server-poll-timeout (OpenVPN: 120)
    connect_retry_tries: int = 0  # connect-retry-max: tries per remote, 0 = unlimited
    tcp_nodelay: bool = False
    socket_flags_nodelay: bool = False  # socket-flags TCP_NODELAY
    tcp_queue_limit: int = 64  # packets queued per TCP connection (OpenVPN: 64)
    http_proxy: HttpProxy | None = None
    sndbuf: int | None = None
    rcvbuf: int | None = None
    fast_io: bool = False

    # -- addresses -------------------------------------------------------------------------
    server: IPv4Network | None = None  # `server NET MASK`
    server_nopool: bool = False  # `server NET MASK nopool`
    server_ipv6: IPv6Interface | None = None  # `server-ipv6 NET/BITS`, address as written
    ifconfig: IPv4Interface | None = None  # own tunnel address + netmask (topology subnet)
    ifconfig_ipv6: IPv6Interface | None = None
    ifconfig_ipv6_remote: IPv6Address | None = None
    pool: AddressPool | None = None
    pool_ipv6: IPv6Interface | None = None  # first address handed out + prefix length
    routes: list[Route] = field(default_factory=list)
    routes_ipv6: list[RouteIPv6] = field(default_factory=list)
    pushes: list[str] = field(default_factory=list)  # the `push` lines only; see push_list
    client_to_client: bool = False
    duplicate_cn: bool = False
    max_clients: int = 1024
    connect_freq_initial: tuple[int, int] = (100, 10)  # stock's default: 100 answers per 10 s

    # -- TLS -------------------------------------------------------------------------------
    ca_pem: str | None = field(default=None, repr=False)
    ca_source: str | None = None  # the file read, or "inline"
    cert_pem: str | None = field(default=None, repr=False)
    cert_source: str | None = None
    key_pem: str | None = field(default=None, repr=False)
    key_source: str | None = None
    dh: str | None = None  # "none", or the file/"inline" given (checked, not used: ECDHE only)
    remote_cert_tls: Literal["server", "client"] | None = None
    verify_x509_name: str | None = None
    verify_x509_type: X509NameType = "subject"
    tls_version_min: str | None = None  # "1.0".."1.3"; None: the default (1.2)
    tls_version_max: str | None = None
    reneg_sec: int = 3600
    reneg_sec_min: int | None = None  # `reneg-sec MAX MIN`: a server's jitter range
    hand_window: int = 60
    tls_timeout: int = 2
    tran_window: int = 3600
    auth_nocache: bool = False
    # -- username/password (options_auth.py) -----------------------------------------------
    auth_user_pass: str | None = None  # a file name, "inline", or "" (ask on the terminal)
    auth_user_pass_inline: str | None = field(default=None, repr=False)
    auth_retry: str = "none"
    auth_user_pass_verify: tuple[str, str] | None = None  # (command, "via-file"|"via-env")
    verify_client_cert: str = "require"
    username_as_common_name: bool = False
    # Control-channel wrap (options_wrap.py): which one, its key, where it came from.
    control_wrap: Literal["tls-auth", "tls-crypt", "tls-crypt-v2"] | None = None
    control_key: bytes | None = field(default=None, repr=False)
    control_key_source: str | None = None
    tls_auth_direction: int | None = None  # `tls-auth FILE DIR`
    key_direction: int | None = None  # `key-direction DIR` (applies when tls-auth has none)
    # tls-crypt-v2: the server key (servers) or the client key (clients), as read.
    tls_crypt_v2_key: ServerKey | ClientKey | None = field(default=None, repr=False)
    tls_crypt_v2_verify: str | None = None  # `tls-crypt-v2-verify CMD`
    tls_crypt_v2_max_age: int = 0  # days; 0: no limit

    # -- data channel ----------------------------------------------------------------------
    data_ciphers: list[str] = field(default_factory=lambda: list(DEFAULT_DATA_CIPHERS))
    data_ciphers_fallback: str | None = None
    cipher: str | None = None  # legacy `cipher`, as written; negotiation ignores it in 2.6
    auth: str | None = None  # `auth`, upper-case: the tls-auth and CBC HMAC digest
    # `comp-lzo no`: no compression, but OpenVPN then puts a 0xFA byte in front of every data
    # payload (OPENVPN-WIRE.md 8.4); the data channel must add/strip it or refuse the config.
    comp_lzo_stub: bool = False
    compression: str | None = None  # a tunnel/protocol/compress.py kind (comp-lzo / compress)
    allow_compression: str | None = None  # "yes" | "no" | "asym" as written; None: not set
    replay_window: int = 64
    replay_seconds: int = 15
    mute_replay_warnings: bool = False

    # -- keepalive and exit ----------------------------------------------------------------
    keepalive: tuple[int, int] | None = None  # `keepalive N M` as written
    ping: int = 0  # send a ping after this long without sending anything
    ping_restart: int = 0  # restart after this long without receiving anything
    ping_exit: int = 0  # exit (instead of restart) after this long without receiving
    push_ping: int | None = None  # server mode + keepalive: pushed "ping N"
    push_ping_restart: int | None = None  # server mode + keepalive: pushed "ping-restart M"
    explicit_exit_notify: int = 0

    # -- process ---------------------------------------------------------------------------
    user: str | None = None
    group: str | None = None
    verb: int = 1
    mute: int = 0
    status_file: Path | None = None
    status_interval: int = 60
    status_version: int = 1
    log_file: Path | None = None
    log_append: bool = False
    script_security: int = 1
    disable_dco: bool = False
    management: ManagementOptions | None = None  # the management* options (options_mgmt.py)
    metrics_listen: tuple[str, int] | None = None  # ours: the Prometheus endpoint

    # -- operations: process, server ops, TLS knobs, scripts, routing (model_ops.py) ------
    ops: OpsOptions = field(default_factory=OpsOptions)

    # -- bookkeeping -----------------------------------------------------------------------
    ignore_unknown_options: list[str] = field(default_factory=list)  # names given
    ignored: list[IgnoredOption] = field(default_factory=list)  # what was actually skipped
    notes: list[str] = field(default_factory=list)  # "file:line: ..." worth logging
    option_lines: dict[str, int] = field(default_factory=dict)  # option -> last line set
    end_line: int = 0  # the file's last line, for "missing option" messages

    # -- derived views ---------------------------------------------------------------------

    @property
    def route_gateway(self) -> IPv4Address | None:
        """The gateway a `server` pushes (its own tunnel address), else None."""
        if self.server is not None and self.ifconfig is not None:
            return self.ifconfig.ip
        return None

    @property
    def push_list(self) -> list[str]:
        """What a server sends in PUSH_REPLY before the per-client items, in OpenVPN's order.

        The `push` lines come first, then what the helpers add (``helper.c``): "tun-ipv6" for
        server-ipv6, "route-gateway"/"topology" for server, "ping"/"ping-restart" for
        keepalive. The session appends ifconfig, peer-id, cipher, ... per client.
        """
        items = list(self.pushes)
        if self.server_ipv6 is not None:
            items.append("tun-ipv6")
        if self.route_gateway is not None and self.topology == "subnet":
            items.append(f"route-gateway {self.route_gateway}")
            items.append(f"topology {self.topology}")
        elif self.server is not None and self.ifconfig is not None:
            # helper.c for net30/p2p: a route to the whole VPN with client-to-client, else
            # (net30) one to the server's own address; then the topology.
            if self.client_to_client:
                items.append(f"route {self.server.network_address} {self.server.netmask}")
            elif self.topology == "net30":
                items.append(f"route {self.ifconfig.ip}")
            items.append(f"topology {self.topology}")
        if self.push_ping is not None and self.push_ping_restart is not None:
            items.append(f"ping {self.push_ping}")
            items.append(f"ping-restart {self.push_ping_restart}")
        return items

    @property
    def compression_mode(self) -> str:
        """"asym" (compressed packets from the peer are decompressed) or "stub-only"."""
        if self.allow_compression in ("yes", "asym"):
            return "asym"
        if self.allow_compression is None and self.compression in NON_STUB_KINDS:
            return "asym"  # 2.6: a real algorithm without allow-compression receives
        return "stub-only"

    def line_of(self, option: str) -> int:
        """Where an option was (last) set; the end of the file if it was not."""
        return self.option_lines.get(option, self.end_line)

    def error(self, option: str, text: str) -> ConfigError:
        """A ConfigError located at the line of ``option``."""
        return config_error(self.source, self.line_of(option), text)

    def note(self, option: str, text: str) -> None:
        """Record something worth logging about ``option`` (not an error)."""
        self.notes.append(f"{self.source}:{self.line_of(option)}: {text}")

    def note_at(self, line: int, text: str) -> None:
        """A note at an explicit line (inside a <connection> block)."""
        self.notes.append(f"{self.source}:{line}: {text}")
