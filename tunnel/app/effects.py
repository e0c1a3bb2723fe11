"""What each option the config parser accepts does at run time: applied, or said to do nothing.

Every option a config file sets is either applied by the runtime or named in the log as
"accepted, no effect" with the reason, so nothing a user wrote is silently ignored.
`APPLIED` and `NO_EFFECT` together must cover the parser's whole option table
(`tunnel.config.SUPPORTED_OPTIONS`); a test holds them to that, and an option that is in
neither still gets a log line rather than silence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from tunnel.app.ops_support import OPS_REFUSED
from tunnel.config import TunnelConfig

__all__ = ["APPLIED", "NO_EFFECT", "no_effect_reason", "unapplied_options"]

# Applied by the runtime (or refused before it starts: `secret` by the parser). The
# comment says where, for a reader hunting an option down.
APPLIED: frozenset[str] = frozenset(
    {
        # role and mode: build.py, run.py
        "client", "pull", "tls-client", "tls-server", "mode", "server",
        # device: device.py
        "dev", "dev-type", "topology", "tun-mtu", "persist-tun", "ifconfig", "ifconfig-ipv6",
        "route", "route-ipv6",
        # MSS clamping: by the session (build.py converts the mode)
        "mssfix",
        # link: link.py
        "proto", "port", "lport", "rport", "local", "remote", "remote-random", "nobind",
        "resolv-retry", "sndbuf", "rcvbuf",
        # transport: options_transport.py, build.py (Client), tunnel/io (TCP drivers)
        "connect-retry", "connect-retry-max", "connect-timeout", "server-poll-timeout",
        "tcp-nodelay", "tcp-queue-limit", "socket-flags", "connection",
        "http-proxy", "http-proxy-option", "http-proxy-user-pass",
        # refused by the parser (options_transport.py), whatever their arguments
        "port-share", "socks-proxy", "http-proxy-override", "http-proxy-retry",
        "http-proxy-timeout", "socks-proxy-retry",
        # addresses and push: build.py (ServerSettings)
        "ifconfig-pool", "push", "max-clients", "connect-freq-initial", "duplicate-cn",
        "server-ipv6",
        "ifconfig-ipv6-pool",
        # TLS and data channel: build.py (TlsSettings, SessionSettings)
        "ca", "cert", "key", "dh", "remote-cert-tls", "verify-x509-name", "tls-version-min",
        "tls-version-max", "reneg-sec", "hand-window", "tls-timeout", "tran-window",
        "data-ciphers", "ncp-ciphers", "data-ciphers-fallback", "replay-window",
        "allow-compression", "compress", "comp-lzo", "cipher", "auth",
        # username/password: credentials.py, auth_verify.py, build.py, connect.py (auth-nocache)
        "auth-user-pass", "auth-nocache", "auth-retry", "auth-user-pass-verify",
        "verify-client-cert",
        "username-as-common-name",
        # keepalive and exit: build.py timers, run.py (ping-exit)
        "keepalive", "ping", "ping-restart", "ping-exit", "explicit-exit-notify",
        # process: logsetup.py, status.py, privileges.py
        "user", "group", "verb", "mute", "mute-replay-warnings", "status", "status-version",
        "log", "log-append",
        # the management interface: app/management/ (metrics-listen: app/metrics.py)
        "management", "management-hold", "management-query-passwords", "management-up-down",
        "management-client-auth", "management-forget-disconnect", "management-signal",
        "management-log-cache", "management-client-user", "management-client-group",
        "management-client", "management-external-key", "management-external-cert",
        "metrics-listen",
        # read by the parser itself
        "ignore-unknown-option", "setenv",
        # control-channel wraps (options_wrap.py -> app/build.py: build_control_wrap)
        "tls-auth", "tls-crypt", "tls-crypt-v2", "tls-crypt-v2-verify", "tls-crypt-v2-max-age",
        "key-direction",
        # refused by the parser, whatever its arguments
        "secret",
        # issue 11 operations (options_ops.py): process.py, serve.py + ccd.py, crl.py, tls_ops.py
        "daemon", "syslog", "writepid", "dev-node", "client-config-dir", "ccd-exclusive",
        "ifconfig-pool-persist", "crl-verify", "tls-cipher", "tls-ciphersuites", "tls-groups",
        "ecdh-curve", "capath", "pkcs12", "ns-cert-type", "remote-cert-ku", "remote-cert-eku",
        # scripts.py + hooks.py (script-security decides whether they run), routing.py
        "up", "down", "route-up", "tls-verify", "client-connect", "client-disconnect",
        "learn-address", "up-restart", "down-pre", "redirect-gateway", "route-nopull",
        "route-noexec", "script-security", "pull-filter", "tls-exit", "peer-fingerprint",
        "client-to-client",
        # logsetup.py (the log line prefix), connect.py / serve.py (routes added later)
        "machine-readable-output", "route-delay", "route-pre-down", "ipchange",
        # refused at start until applied (ops_support.py)
        *OPS_REFUSED,
    }
)

_Reason = Callable[[TunnelConfig], str | None]


def _always(reason: str) -> _Reason:
    return lambda cfg: reason


def _for_role(role: str, reason: str) -> _Reason:
    return lambda cfg: reason if cfg.role == role else None


# Accepted but without effect here, with the reason logged. A function returning None means
# "applied in this configuration" (some options matter for one role only).
NO_EFFECT: dict[str, _Reason] = {
    "comp-noadapt": _always("nothing is ever compressed, so nothing adapts (a no-op in 2.6)"),
    "disable-dco": _always("this tunnel never uses data channel offload"),
    "fast-io": _always("the event loop always drains the socket in batches"),
    "float": _for_role(
        "client", "the client accepts packets only from the address of its current remote"
    ),
    "persist-key": _always("keys stay in memory across reconnects anyway"),
    "txqueuelen": _always("the TUN device keeps the kernel's default queue length"),
    # issue 11, item 8
    "ping-timer-rem": _always(
        "the ping-restart timer only runs while there is a peer to hear from anyway"
    ),
    "tun-mtu-extra": _always("it only sizes buffers for a tap device's Ethernet header"),
    "push-peer-info": _for_role(
        "server", "this server sends no peer-info to its clients (a client's: app/peerinfo.py)"
    ),
    "disable-occ": _always("this tunnel never sends OCC requests or compares options strings"),
    "tun-ipv6": _always("IPv6 on the tun device needs no switch (as in OpenVPN 2.5+)"),
    "up-delay": _always(
        "a client configures its device and runs 'up' only once the server's push arrived, "
        "which is what up-delay asks for (stock: the same with pull; refused in a server)"),
    "persist-local-ip": _always("the local address is resolved once, at start"),
    "persist-remote-ip": _always("the remote address is resolved once per connection"),
}

# Options that one role reads and the other accepts without effect.
_CLIENT_ONLY = frozenset({"ping-exit", "remote-random", "resolv-retry"})
_SERVER_ONLY = frozenset({"push", "max-clients", "ifconfig-pool"})


def no_effect_reason(option: str, cfg: TunnelConfig) -> str | None:
    """Why `option` does nothing in this configuration, or None when it is applied."""
    if option in _CLIENT_ONLY and cfg.role == "server":
        return "it only applies to a client"
    if option in _SERVER_ONLY and cfg.role == "client":
        return "it only applies to a server"
    if option in ("ifconfig", "ifconfig-ipv6") and cfg.role == "client":
        return "a client takes its address from the server's push"
    if option == "tls-client" and cfg.role == "client" and not cfg.pull:
        return ("without 'pull' a stock client ignores what the server pushes; this client "
                "always asks for and applies the push")
    if option == "reneg-sec" and cfg.reneg_sec_min is not None:
        return "its MIN argument is not used: a server always takes up to 10 % off reneg-sec"
    reason = NO_EFFECT.get(option)
    if reason is not None:
        return reason(cfg)
    if option in APPLIED:
        return None
    return "not applied by this version of the tunnel"


def unapplied_options(cfg: TunnelConfig) -> Iterator[tuple[str, int, str]]:
    """(option, line, reason) for every option in the file that has no effect here."""
    for option, line in sorted(cfg.option_lines.items(), key=lambda item: item[1]):
        reason = no_effect_reason(option, cfg)
        if reason is not None:
            yield option, line, reason
