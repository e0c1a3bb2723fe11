"""What a session needs to know, independent of where it came from (config file, demo, test)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from core import FrameBuilder
from tunnel.protocol.constants import IPV4_UDP_OVERHEAD, TLS_MTU
from tunnel.protocol.datacipher import DEFAULT_DATA_CIPHERS
from tunnel.protocol.tls_settings import TlsSettings
from tunnel.protocol.wrap.base import PLAIN, ControlWrap


@dataclass(slots=True)
class SessionSettings:
    """Protocol settings of one peer role. Times are seconds; 0 disables a timer."""

    is_client: bool
    tls_context: ssl.SSLContext
    tls_settings: TlsSettings
    options_string: str
    data_ciphers: Sequence[str] = DEFAULT_DATA_CIPHERS
    data_ciphers_fallback: str | None = None
    auth: str = "SHA1"  # `auth`: the HMAC digest of a CBC data channel (AEAD has its own tag)
    peer_info: str | None = None  # client only: the IV_ lines sent in KM2
    ping: float = 0.0
    ping_restart: float = 0.0
    reneg_sec: float = 3600.0
    hand_window: float = 60.0
    tls_timeout: float = 2.0
    tran_window: float = 3600.0
    replay_window: int = 64
    replay_seconds: float = 15.0
    explicit_exit_notify: int = 0
    max_control_datagram: int = TLS_MTU - IPV4_UDP_OVERHEAD  # runtime sizes it per link
    push_request_interval: float = 5.0
    # Client: applied to each PUSH_REPLY text before it is parsed (pull-filter, issue 11); it
    # returns the text with filtered options removed, or raises ProtocolError to refuse it.
    push_filter: Callable[[str], str] | None = None
    # --mssfix: clamp TCP MSS in SYNs both ways so that a packet stays within this many bytes;
    # `mssfix_mode` says which (mssfix.mss_for: "mtu" the outer datagram, "payload" the UDP/TCP
    # payload, "fixed" the inner packet); 0 disables it.
    tun_mtu: int = 1500  # pushed to clients that announce IV_MTU
    mssfix: int = 1492
    mssfix_mode: Literal["mtu", "payload", "fixed"] = "mtu"
    # The kernel's IP + UDP/TCP headers around each datagram (geometry.outer_overhead).
    outer_overhead: int = IPV4_UDP_OVERHEAD
    # What the transport adds to each packet, registered with a FrameBuilder (TCP: the length
    # prefix); the session's data frame (geometry.data_frame) includes it.
    link_framing: Callable[[FrameBuilder], None] | None = None
    # `comp-lzo no`: nothing is compressed, but every data payload carries a 0xFA "not
    # compressed" byte in front (comp.h NO_COMPRESS_BYTE); both peers must agree. Kept as the
    # short way to say compression="stub".
    comp_lzo_stub: bool = False
    # The compression framing (compress.py kinds) and whether compressed packets from the peer
    # may be decompressed: "asym" (allow-compression yes/asym, or a non-stub kind configured
    # without allow-compression, as 2.6) or "stub-only" (the default; also refuses a pushed
    # non-stub framing, as stock).
    compression: str | None = None
    allow_compression: str = "stub-only"
    # tls-auth / tls-crypt / tls-crypt-v2 (tunnel/protocol/wrap/); plain by default. The
    # long-form packet-id carries Unix time: now + clock_offset (the app sets the offset).
    control_wrap: ControlWrap = field(default=PLAIN, repr=False)
    clock_offset: float = 0.0
    # 2.6 dynamic tls-crypt for renegotiations (wrap/dynamic.py): announced (client) and
    # accepted (server) only when the TLS exporter is reachable (tunnel/protocol/ekm.py).
    dyn_tls_crypt: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Client `auth-nocache` (stock's purge_user_pass()): username/password above stay None and
    # each key-method 2 message takes them from `read_user_pass` (the first call hands over the
    # values read at start, later ones read the file/inline block/terminal again), unless the
    # server pushed an auth-token, which is sent instead. Nothing here keeps the password.
    auth_nocache: bool = False
    read_user_pass: Callable[[], tuple[str, str]] | None = field(default=None, repr=False)
    # Server: every key's authentication waits for an outside verdict (management-client-auth):
    # an AuthRequested event, then Session.authorize(). No verdict in hand-window: refused.
    defer_auth: bool = False
    # Server: `username-as-common-name` (the client's name is its username once authenticated).
    username_as_common_name: bool = False
    # Client: `auth-retry` after AUTH_FAILED: "none" exits, "nointeract"/"interact" reconnect.
    auth_retry: str = "none"
