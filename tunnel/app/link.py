"""The UDP link of a configured peer: resolving remotes, checking a route exists, the socket.

`proto udp4`/`udp6` pick the address family; plain `udp` takes the family of the first remote
that resolves (client) or IPv4 unless `local` is an IPv6 address (server). One socket serves one
family, so remotes of the other family are skipped with a warning.

Failing at start is deliberate: a name that does not resolve or an address with no route is
reported in one line before any device is created, unless `resolv-retry` was given, which
asks (as in OpenVPN) to keep trying for that long.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import time
from dataclasses import dataclass

from tunnel.config import Remote, TunnelConfig
from tunnel.config.model import HttpProxy
from tunnel.io.udp import open_udp_socket

__all__ = [
    "LinkError",
    "ResolvedRemote",
    "format_address",
    "link_name",
    "open_client_socket",
    "open_server_socket",
    "resolve_remotes",
]

Address = tuple[str, int]

_RESOLVE_PAUSE = 5.0  # seconds between attempts under resolv-retry (OpenVPN: 5 s)
_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL})


class LinkError(OSError):
    """The link cannot be set up; the message is the whole story, in one line."""


@dataclass(frozen=True, slots=True)
class ResolvedRemote:
    host: str  # as written in the config
    address: Address
    family: int
    proto: str = "udp"  # the remote's proto (udp/udp4/udp6/tcp/tcp4/tcp6)
    remote: Remote | None = None  # the config's entry (with its <connection> profile)
    proxy: HttpProxy | None = None  # reached through this HTTP proxy (address: unresolved)
    proxy_address: Address | None = None

    @property
    def tcp(self) -> bool:
        return self.proto.startswith("tcp")


def link_name(family: int, tcp: bool = False) -> str:
    if tcp:
        return "TCPv6" if family == socket.AF_INET6 else "TCPv4"
    return "UDPv6" if family == socket.AF_INET6 else "UDPv4"


def format_address(address: Address, family: int) -> str:
    """OpenVPN's way of printing a socket address: [AF_INET]192.0.2.1:1194."""
    kind = "AF_INET6" if family == socket.AF_INET6 else "AF_INET"
    return f"[{kind}]{address[0]}:{address[1]}"


def _family_of(proto: str) -> int:
    families = {"udp4": socket.AF_INET, "udp6": socket.AF_INET6,
                "tcp4": socket.AF_INET, "tcp6": socket.AF_INET6}
    return families.get(proto, socket.AF_UNSPEC)


def _resolve_one(remote: Remote) -> list[tuple[int, Address]]:
    tcp = remote.proto.startswith("tcp")
    infos = socket.getaddrinfo(
        remote.host, remote.port, _family_of(remote.proto),
        socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM,
        socket.IPPROTO_TCP if tcp else socket.IPPROTO_UDP,
    )
    return [(family, (str(sockaddr[0]), int(sockaddr[1]))) for family, _, _, _, sockaddr in infos]


def _route_error(family: int, address: Address) -> OSError | None:
    """connect() on a throwaway UDP socket asks the kernel for a route without sending a byte."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(address)
        except OSError as exc:
            return exc
    return None


def resolve_remotes(cfg: TunnelConfig, log: logging.Logger) -> list[ResolvedRemote]:
    """Every `remote`, resolved and routable, in the order the client will try them."""
    remotes = list(cfg.remotes)
    if cfg.remote_random:
        random.shuffle(remotes)
    retry_for = cfg.resolv_retry if "resolv-retry" in cfg.option_lines else 0
    deadline = None if retry_for is None else time.monotonic() + retry_for
    while True:
        resolved, problems = _resolve_all(remotes, log, cfg.http_proxy)
        if resolved:
            return resolved
        if deadline is not None and time.monotonic() >= deadline:
            raise LinkError(problems[0] if len(problems) == 1 else "; ".join(problems))
        log.warning("%s; retrying in %d s (resolv-retry)", problems[0], _RESOLVE_PAUSE)
        time.sleep(_RESOLVE_PAUSE)


def proxy_for(remote: Remote, global_proxy: HttpProxy | None) -> HttpProxy | None:
    """The HTTP proxy a remote is reached through (its <connection> block's, or the global)."""
    if remote.profile is not None:
        return remote.profile.http_proxy
    return global_proxy


def _resolve_all(
    remotes: list[Remote], log: logging.Logger, global_proxy: HttpProxy | None = None
) -> tuple[list[ResolvedRemote], list[str]]:
    resolved: list[ResolvedRemote] = []
    problems: list[str] = []
    family: int | None = None
    for remote in remotes:
        proxy = proxy_for(remote, global_proxy)
        if proxy is not None:
            # The proxy resolves the remote's name (proxy.c sends it as written); we only
            # need the proxy's own address.
            try:
                proxy_remote = Remote(proxy.host, proxy.port, remote.proto)
                proxy_family, proxy_address = _resolve_one(proxy_remote)[0]
            except (socket.gaierror, UnicodeError) as exc:
                reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
                problems.append(f"cannot resolve http-proxy {proxy.host!r}: {reason}")
                continue
            resolved.append(ResolvedRemote(
                remote.host, (remote.host, remote.port), proxy_family, remote.proto, remote,
                proxy=proxy, proxy_address=proxy_address,
            ))
            continue
        try:
            candidates = _resolve_one(remote)
        except (socket.gaierror, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
            problems.append(f"cannot resolve remote {remote.host!r}: {reason}")
            continue
        if family is not None:
            candidates = [c for c in candidates if c[0] == family]
            if not candidates:
                log.warning(
                    "remote %s skipped: it has no %s address and the link is %s",
                    remote.host, "IPv6" if family == socket.AF_INET6 else "IPv4",
                    link_name(family),
                )
                continue
        cand_family, address = candidates[0]
        error = _route_error(cand_family, address)
        if error is not None:
            why = (
                "no route to it" if error.errno in _UNREACHABLE else error.strerror or str(error)
            )
            problems.append(
                f"remote {remote.host} ({format_address(address, cand_family)}) is unreachable: "
                f"{why}"
            )
            continue
        family = cand_family
        resolved.append(ResolvedRemote(remote.host, address, cand_family, remote.proto, remote))
    for problem in problems if resolved else ():
        log.warning("%s; skipping it", problem)
    return resolved, problems


def _local_address(cfg: TunnelConfig, family: int) -> str:
    if cfg.local is None:
        return "::" if family == socket.AF_INET6 else "0.0.0.0"
    try:
        infos = socket.getaddrinfo(
            cfg.local, None, family, socket.SOCK_DGRAM, 0, socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise LinkError(f"cannot resolve 'local {cfg.local}': {reason}") from None
    return str(infos[0][4][0])


def _server_family(cfg: TunnelConfig) -> int:
    if cfg.proto in ("udp6", "tcp6"):
        return socket.AF_INET6
    if cfg.proto in ("udp", "tcp") and cfg.local is not None and ":" in cfg.local:
        return socket.AF_INET6
    return socket.AF_INET


def _tune(sock: socket.socket, cfg: TunnelConfig) -> None:
    # open_udp_socket already asks for large buffers; explicit sndbuf/rcvbuf override them.
    for size, option in ((cfg.sndbuf, socket.SO_SNDBUF), (cfg.rcvbuf, socket.SO_RCVBUF)):
        if size:
            sock.setsockopt(socket.SOL_SOCKET, option, size)


def _bind(cfg: TunnelConfig, family: int, port: int) -> socket.socket:
    host = _local_address(cfg, family)
    try:
        sock = open_udp_socket(host, port, family=family)
    except OSError as exc:
        message = exc.strerror or str(exc)
        if exc.errno == errno.EACCES:
            message = f"cannot bind UDP port {port}: permission denied (ports below 1024 need root)"
        raise LinkError(exc.errno or errno.EIO, message) from None
    _tune(sock, cfg)
    return sock


def open_server_socket(cfg: TunnelConfig) -> socket.socket:
    if cfg.proto.startswith("tcp"):
        return _listen(cfg, _server_family(cfg), cfg.lport)
    return _bind(cfg, _server_family(cfg), cfg.lport)


def open_server_sockets(cfg: TunnelConfig, count: int) -> list[socket.socket]:
    """`count` UDP sockets on the server's port, one SO_REUSEPORT group in this order (a
    multi-worker server: tunnel/app/workers.py)."""
    family = _server_family(cfg)
    host = _local_address(cfg, family)
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            try:
                sock = open_udp_socket(host, cfg.lport, family=family, reuse_port=True)
            except OSError as exc:
                message = exc.strerror or str(exc)
                if exc.errno == errno.EACCES:
                    message = (f"cannot bind UDP port {cfg.lport}: permission denied "
                               "(ports below 1024 need root)")
                raise LinkError(exc.errno or errno.EIO, message) from None
            _tune(sock, cfg)
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _listen(cfg: TunnelConfig, family: int, port: int) -> socket.socket:
    from tunnel.io.tcp_server import open_tcp_listener

    host = _local_address(cfg, family)
    try:
        sock = open_tcp_listener(host, port, family)
    except OSError as exc:
        message = exc.strerror or str(exc)
        if exc.errno == errno.EACCES:
            message = f"cannot bind TCP port {port}: permission denied (ports below 1024 need root)"
        raise LinkError(exc.errno or errno.EIO, message) from None
    _tune(sock, cfg)
    return sock


def client_bind_address(cfg: TunnelConfig, family: int) -> Address | None:
    """Where a client link binds (local/lport), or None for an ephemeral port (nobind)."""
    if not cfg.bind_local:
        return None
    return _local_address(cfg, family), cfg.lport


def open_client_socket(cfg: TunnelConfig, family: int) -> socket.socket:
    """Bound to local/lport when asked; otherwise an ephemeral port (nobind)."""
    return _bind(cfg, family, cfg.lport if cfg.bind_local else 0)
