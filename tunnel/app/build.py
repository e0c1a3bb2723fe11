"""TunnelConfig -> the sans-I/O protocol objects (settings, Server, Client), via tunnel.runtime.

Nothing here opens a file descriptor or a socket: this is the translation from OpenVPN's option
vocabulary to the protocol layer's, so it can be read (and tested) on its own. Resolving host
names and opening the link is `link.py`'s job; the device is `device.py`'s.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
from collections.abc import Sequence

from core import Frame
from tunnel.app.crl import CrlCheck
from tunnel.app.ops_support import refuse_unapplied
from tunnel.app.peerinfo import peer_info_extra
from tunnel.app.v2verify import metadata_verifier
from tunnel.config import TunnelConfig
from tunnel.config.model import Remote, is_tcp
from tunnel.protocol.addresspool import AddressPool
from tunnel.protocol.client import AuthTokenStore, Client
from tunnel.protocol.datacipher import DEFAULT_AUTH
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.server import Server, ServerSettings
from tunnel.protocol.settings import SessionSettings
from tunnel.protocol.tls_settings import TlsSettings
from tunnel.protocol.wrap import (
    PLAIN,
    ClientKey,
    ControlWrap,
    ServerKey,
    TlsAuthWrap,
    TlsCryptV2ClientWrap,
    TlsCryptV2ServerWrap,
    TlsCryptWrap,
    canonical_digest,
)
from tunnel.protocol.wrap.v2keys import CLIENT_PEM, SERVER_PEM
from tunnel.runtime import Timers, make_frame, session_settings

__all__ = [
    "PRE_PULL_PING_RESTART",
    "TUN_MTU_MAX",
    "Address",
    "build_client",
    "build_control_wrap",
    "build_frame",
    "build_server",
    "build_server_settings",
    "build_session_settings",
    "build_timers",
    "build_tls_settings",
    "check_supported",
]

Address = tuple[str, int]

# A pulling stock client uses ping-restart 120 until the server pushes its own values
# (OpenVPN's PRE_PULL_INITIAL_PING_RESTART), so a dead server is noticed even before the push.
PRE_PULL_PING_RESTART = 120
# What our client announces as IV_MTU (runtime's peer-info): a server may push a tun-mtu up to
# this, so the client's buffers are sized for it whatever its own tun-mtu says.
TUN_MTU_MAX = 1600


def check_supported(cfg: TunnelConfig) -> None:
    """Refuse, at the offending line, what the parser accepts but this runtime cannot run."""
    refuse_unapplied(cfg)  # issue 11 options not applied yet (ops_support.py)
    if cfg.role == "server" and cfg.mode != "server":
        raise cfg.error(
            "tls-server",
            "a point-to-point server ('tls-server' without 'server NET MASK' or 'mode server') "
            "is not supported: use 'server NET MASK'",
        )
    if cfg.role == "server" and cfg.pool is None:
        raise cfg.error(
            "server",
            "the server has no address pool for its clients ('server ... nopool' needs "
            "'ifconfig-pool START END')",
        )
    if cfg.role == "server" and cfg.ifconfig is None:
        raise cfg.error(
            "server-ipv6",
            "an IPv6-only server is not supported: add 'server NET MASK' for the IPv4 addresses",
        )


def build_tls_settings(cfg: TunnelConfig) -> TlsSettings:
    # A client may have no certificate (auth-user-pass with only `ca`); checks.py insists on
    # one everywhere else.
    ops = cfg.ops
    peer_checks = []
    if ops.crl_verify is not None or ops.crl_inline is not None:
        peer_checks.append(CrlCheck(cfg.ca_pem or "", ops.crl_verify, ops.crl_is_dir,
                                    ops.crl_inline))
    return TlsSettings(
        ca=cfg.ca_pem or "",
        cert=cfg.cert_pem or "",
        key=cfg.key_pem or "",
        verify_client_cert=cfg.verify_client_cert,
        remote_cert_tls=cfg.remote_cert_tls,
        verify_x509_name=(
            (cfg.verify_x509_name, cfg.verify_x509_type) if cfg.verify_x509_name else None
        ),
        tls_version_min=cfg.tls_version_min or "1.2",
        tls_version_max=cfg.tls_version_max,
        tls_cipher=ops.tls_cipher,
        tls_ciphersuites=ops.tls_ciphersuites,
        tls_groups=ops.tls_groups,
        ecdh_curve=ops.ecdh_curve,
        capath=str(ops.capath) if ops.capath is not None else None,
        ns_cert_type=ops.ns_cert_type,
        remote_cert_ku=tuple(ops.remote_cert_ku),
        remote_cert_eku=ops.remote_cert_eku,
        peer_checks=tuple(peer_checks),
        peer_fingerprints=tuple(ops.peer_fingerprints),
    )


def build_timers(cfg: TunnelConfig) -> Timers:
    ping_restart = cfg.ping_restart
    if cfg.role == "client" and cfg.pull and ping_restart == 0 and cfg.ping_exit == 0:
        ping_restart = PRE_PULL_PING_RESTART
    return Timers(
        ping=float(cfg.ping),
        ping_restart=float(ping_restart),
        reneg_sec=float(cfg.reneg_sec),
        hand_window=float(cfg.hand_window),
        tls_timeout=float(cfg.tls_timeout),
        tran_window=float(cfg.tran_window),
    )


def uses_tcp(cfg: TunnelConfig) -> bool:
    """Whether any link of this config is a TCP one (the server's, or one of the remotes)."""
    return is_tcp(cfg.proto) or any(is_tcp(remote.proto) for remote in cfg.remotes)


def build_frame(cfg: TunnelConfig) -> Frame:
    """The data-channel geometry; a client leaves room for a pushed tun-mtu up to IV_MTU."""
    mtu = max(cfg.tun_mtu, TUN_MTU_MAX) if cfg.role == "client" else cfg.tun_mtu
    return make_frame(
        mtu,
        comp_lzo_stub=cfg.comp_lzo_stub,
        # A client may be pushed a framing: its buffers leave room for any.
        compression="any" if cfg.role == "client" else cfg.compression,
        ciphers=_possible_ciphers(cfg),
        auth=cfg.auth or DEFAULT_AUTH,
        stream=uses_tcp(cfg),
    )


def _possible_ciphers(cfg: TunnelConfig) -> list[str]:
    """Every cipher the negotiation may pick: data-ciphers and the fallback."""
    fallback = [cfg.data_ciphers_fallback] if cfg.data_ciphers_fallback else []
    return [*cfg.data_ciphers, *fallback]


def link_proto(cfg: TunnelConfig, *, tcp: bool, ipv6_link: bool) -> str:
    """The proto word of the options string for a link (socket.c: proto_remote)."""
    if tcp:
        return "TCPv4_CLIENT" if cfg.role == "client" else "TCPv4_SERVER"
    return "UDPv6" if ipv6_link else "UDPv4"


def build_control_wrap(cfg: TunnelConfig) -> ControlWrap:
    """tls-auth / tls-crypt from the config (keys were read and checked by the parser)."""
    kind = cfg.control_wrap
    if kind is None:
        return PLAIN
    if kind == "tls-crypt-v2":
        return _tls_crypt_v2_wrap(cfg)
    key = cfg.control_key
    if key is None:
        raise cfg.error(kind, f"'{kind} [inline]' needs an inline <{kind}> block with the key")
    if kind == "tls-auth":
        digest = canonical_digest(cfg.auth or "SHA1")
        if digest is None:
            raise cfg.error(
                "auth", f"option 'auth {cfg.auth}': not a digest tls-auth can use "
                "(SHA1, SHA224, SHA256, SHA384, SHA512)"
            )
        direction = cfg.tls_auth_direction
        if direction is None:
            direction = cfg.key_direction
        return TlsAuthWrap(key, direction, digest)
    if kind == "tls-crypt":
        return TlsCryptWrap.from_key(key, server=cfg.role == "server")
    raise cfg.error(kind, f"option '{kind}' is not supported")


def located(cfg: TunnelConfig, exc: ConfigError) -> ConfigError:
    """A ConfigError from below the config layer ("key: ...") at the FILE:LINE of its option."""
    text = str(exc)
    if text.startswith(f"{cfg.source}:"):
        return exc
    option = text.split(":", 1)[0].split(" ", 1)[0]
    # "cert/key: rejected by OpenSSL": the key is what the user most likely has to change
    option = {"cert/key": "key"}.get(option, option)
    return cfg.error(option, text)


def _tls_crypt_v2_wrap(cfg: TunnelConfig) -> ControlWrap:
    key = cfg.tls_crypt_v2_key
    if key is None:
        raise cfg.error("tls-crypt-v2", "'tls-crypt-v2 [inline]' needs an inline "
                        "<tls-crypt-v2> block with the key")
    if cfg.role == "server":
        if not isinstance(key, ServerKey):
            raise cfg.error("tls-crypt-v2", "a server needs the tls-crypt-v2 server key "
                            f"('{SERVER_PEM}'), not a client key")
        verifier = None
        if cfg.tls_crypt_v2_verify is not None:
            if cfg.script_security < 2:
                raise cfg.error("tls-crypt-v2-verify", "option 'tls-crypt-v2-verify' runs a "
                                "command: it needs 'script-security 2' or higher")
            verifier = metadata_verifier(cfg.tls_crypt_v2_verify)
        return TlsCryptV2ServerWrap(key, max_age_days=cfg.tls_crypt_v2_max_age,
                                    verifier=verifier)
    if not isinstance(key, ClientKey):
        raise cfg.error("tls-crypt-v2", "a client needs its tls-crypt-v2 client key "
                        f"('{CLIENT_PEM}'), not the server key")
    return TlsCryptV2ClientWrap(key)


def build_session_settings(
    cfg: TunnelConfig, *, ipv6_link: bool, tcp: bool | None = None,
    credentials: tuple[str, str] | None = None,
) -> SessionSettings:
    """Raises ConfigError at FILE:LINE of ca/cert/key when the PEM material is unusable.

    `tcp`: the link is TCP (default: the config's `proto`). `credentials`: the client's
    auth-user-pass username and password (credentials.py reads them once per start)."""
    try:
        settings = _session_settings(cfg, ipv6_link=ipv6_link,
                                     tcp=is_tcp(cfg.proto) if tcp is None else tcp)
    except ConfigError as exc:
        raise located(cfg, exc) from None
    settings.auth_retry = cfg.auth_retry
    settings.username_as_common_name = cfg.username_as_common_name
    if credentials is not None:
        settings.username, settings.password = credentials
    return settings


def _session_settings(cfg: TunnelConfig, *, ipv6_link: bool, tcp: bool) -> SessionSettings:
    return session_settings(
        is_client=cfg.role == "client",
        tls=build_tls_settings(cfg),
        data_ciphers=cfg.data_ciphers,
        data_ciphers_fallback=cfg.data_ciphers_fallback,
        timers=build_timers(cfg),
        replay_window=cfg.replay_window,
        replay_seconds=float(cfg.replay_seconds),
        # options.c: "--explicit-exit-notify ignored for --proto tcp" (per connection)
        explicit_exit_notify=0 if tcp else cfg.explicit_exit_notify,
        proto=link_proto(cfg, tcp=tcp, ipv6_link=ipv6_link),
        tun_mtu=cfg.occ_mtu or cfg.tun_mtu,
        # What mssfix counts, and the sizes it is checked against, are the session's
        # (mssfix.mss_for, from the negotiated data frame and the link's outer headers).
        mssfix=cfg.mssfix or 0,
        mssfix_mode=cfg.mssfix_mode,
        comp_lzo_stub=cfg.comp_lzo_stub,
        compression=cfg.compression,
        allow_compression=cfg.compression_mode,
        control_wrap=build_control_wrap(cfg),
        auth=cfg.auth or DEFAULT_AUTH,
        ciphername=cfg.cipher,
        peer_info_extra=peer_info_extra(cfg) if cfg.role == "client" else (),
    )


def build_server_settings(cfg: TunnelConfig, session: SessionSettings) -> ServerSettings:
    pool = cfg.pool
    ifconfig = cfg.ifconfig
    if pool is None or ifconfig is None:
        raise ConfigError(f"{cfg.source}: a server needs 'server NET MASK' (see check_supported)")
    # topology subnet: every client gets the server subnet's mask with its address.
    netmask = pool.netmask or ifconfig.netmask
    pool6, gateway6 = None, None
    if cfg.pool_ipv6 is not None:
        # One IPv6 address per possible client, from the pool start to the end of the prefix.
        first = cfg.pool_ipv6.ip
        last_in_net = cfg.pool_ipv6.network.broadcast_address - 1
        last = min(last_in_net, first + (cfg.max_clients - 1))
        pool6 = AddressPool(first, last, duplicate_cn=cfg.duplicate_cn)
        gateway6 = cfg.ifconfig_ipv6.ip if cfg.ifconfig_ipv6 is not None else None
    if cfg.management is not None and cfg.management.client_auth:
        # management-client-auth: every client waits for client-auth / client-deny
        session = dataclasses.replace(session, defer_auth=True)
    if cfg.auth_user_pass_verify is not None:
        # auth-user-pass-verify: every key waits for the command (app/auth_verify.py)
        session = dataclasses.replace(session, defer_auth=True)
    return ServerSettings(
        session=session,
        pool=(
            AddressPool(ipaddress.IPv4Address(pool.start) + 2, ipaddress.IPv4Address(pool.end),
                        step=4, duplicate_cn=cfg.duplicate_cn)
            if cfg.topology == "net30" else
            AddressPool(ipaddress.IPv4Address(pool.start), ipaddress.IPv4Address(pool.end),
                        duplicate_cn=cfg.duplicate_cn)
        ),
        netmask=str(netmask),
        pool6=pool6,
        prefix6=cfg.pool_ipv6.network.prefixlen if cfg.pool_ipv6 is not None else 64,
        gateway6=gateway6,
        push=tuple(cfg.push_list) + (
            # helper.c: helper_tcp_nodelay pushes the flag to the clients.
            ("socket-flags TCP_NODELAY",) if cfg.tcp_nodelay else ()
        ),
        max_clients=cfg.max_clients,
        # Stock limits stateless reset answers on UDP only (mudp.c): over TCP the handshake
        # already proved the address, and connections are bounded by max-clients instead.
        connect_freq_initial=(2**31 - 1, 10) if is_tcp(cfg.proto) else cfg.connect_freq_initial,
        duplicate_cn=cfg.duplicate_cn,
        client_to_client=cfg.client_to_client,
        topology=cfg.topology,
        server_local=ifconfig.ip,
    )


def build_server(cfg: TunnelConfig, settings: ServerSettings, now: float,
                 cookie_key: bytes | None = None) -> Server:
    """`cookie_key`: None draws one (one process); a multi-worker server's is shared."""
    return Server(settings, now, cookie_key)


def profile_view(cfg: TunnelConfig, remote: Remote) -> TunnelConfig:
    """The config as one remote sees it: its <connection> block's options over the global ones."""
    profile = remote.profile
    if profile is None:
        return cfg
    view = copy.copy(cfg)
    view.connect_retry, view.connect_retry_max = profile.connect_retry, profile.connect_retry_max
    view.connect_timeout = profile.connect_timeout
    view.local, view.lport, view.nobind = profile.local, profile.lport, profile.nobind
    view.bind_local = not profile.nobind and (profile.asked_to_bind or not cfg.pull)
    view.remote_float = profile.remote_float
    if not profile.mssfix_default:
        view.mssfix, view.mssfix_mode = profile.mssfix, profile.mssfix_mode
    view.explicit_exit_notify = profile.explicit_exit_notify
    return view


def build_client(
    cfg: TunnelConfig, session: SessionSettings, remotes: Sequence[Address], now: float,
    *, per_remote: Sequence[SessionSettings] | None = None,
    profiles: Sequence[Remote] | None = None, token_store: AuthTokenStore | None = None,
) -> Client:
    # A client always reconnects after a ping-restart or RESTART; it ends only on signals,
    # AUTH_FAILED, HALT, ping-exit or connect-retry-max.
    return Client(
        session, list(remotes), now, reconnect=True,
        retry=(float(cfg.connect_retry), float(cfg.connect_retry_max)),
        poll_timeout=float(cfg.connect_timeout),
        max_tries=cfg.connect_retry_tries,
        per_remote=per_remote, token_store=token_store,
        per_remote_timing=None if profiles is None else [
            ((float(v.connect_retry), float(v.connect_retry_max)), float(v.connect_timeout))
            for v in (profile_view(cfg, r) for r in profiles)
        ],
    )
