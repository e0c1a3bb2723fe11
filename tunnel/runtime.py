"""Building the protocol objects from settings: shared by `tunnel demo` and the CLI.

This is the one place that knows how a frame, a pool, TLS contexts and session settings fit
together, so the demo and the config-file path cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core import BufferPool, Frame, FrameBuilder
from tunnel import __version__
from tunnel.io.offload import register_vnet_header
from tunnel.io.stream import register_stream_framing
from tunnel.protocol.cbc import CBC_CIPHERS
from tunnel.protocol.cfb import STREAM_CIPHERS
from tunnel.protocol.compress import register_compression
from tunnel.protocol.constants import TLS_MTU
from tunnel.protocol.datachannel import SUPPORTED_CIPHERS
from tunnel.protocol.datacipher import DEFAULT_AUTH, DEFAULT_DATA_CIPHERS, register_data_ciphers
from tunnel.protocol.ekm import supported as ekm_supported
from tunnel.protocol.geometry import framing_overhead, outer_overhead
from tunnel.protocol.messages import build_peer_info, options_string
from tunnel.protocol.settings import SessionSettings
from tunnel.protocol.tls_context import make_context
from tunnel.protocol.tls_settings import TlsSettings
from tunnel.protocol.wrap import PLAIN, ControlWrap
from tunnel.protocol.wrap.base import DYNAMIC_RESERVED

# Buffers in flight at once: a batch per direction and per arena, plus slack for the
# control path; bounded so a leak shows up as exhaustion instead of growth.
DEFAULT_POOL_SIZE = 512


def make_frame(
    tun_mtu: int = 1500,
    *,
    comp_lzo_stub: bool = False,
    ciphers: Sequence[str] = DEFAULT_DATA_CIPHERS,
    auth: str = DEFAULT_AUTH,
    stream: bool = False,
    compression: str | None = None,
) -> Frame:
    """The data-channel geometry: every module registers what it adds (for every cipher kind
    that `ciphers` may negotiate; `stream`: the TCP transport's 16-bit length prefix)."""
    builder = FrameBuilder(tun_mtu=tun_mtu)
    # The TUN's virtio-net header (when the device has one): in front of a packet read, not sent.
    register_vnet_header(builder)
    if stream:
        register_stream_framing(builder)
    register_data_ciphers(builder, ciphers, auth)
    # A client may be pushed any framing later, so its buffers leave room for the largest.
    register_compression(builder, compression or ("stub" if comp_lzo_stub else None))
    return builder.finalize()


def make_pool(frame: Frame, count: int = DEFAULT_POOL_SIZE) -> BufferPool:
    return BufferPool(frame, count)


@dataclass(slots=True)
class Timers:
    ping: float = 10.0
    ping_restart: float = 60.0
    reneg_sec: float = 3600.0
    hand_window: float = 60.0
    tls_timeout: float = 2.0
    tran_window: float = 3600.0


def occ_cipher(
    data_ciphers: Sequence[str], ciphername: str | None, auth: str
) -> tuple[str | None, str, int]:
    """(cipher, auth, keysize) for the options string, as `options_string()` words them.

    `ciphername` is the configured `cipher`/`data-ciphers-fallback` (None: stock's placeholder
    BF-CBC, announced as no cipher, the `auth` digest and keysize 128).
    """
    name = ciphername.upper() if ciphername else None
    if name is None or name == "BF-CBC":
        return None, auth, 128
    announced = name if name in (c.upper() for c in data_ciphers) else None
    if name in SUPPORTED_CIPHERS:
        return announced, "[null-digest]", SUPPORTED_CIPHERS[name][1] * 8
    if name in STREAM_CIPHERS:
        return announced, auth, STREAM_CIPHERS[name][0] * 8
    bits = CBC_CIPHERS[name] * 8 if name in CBC_CIPHERS else 128
    return announced, auth, bits


def session_settings(
    *,
    is_client: bool,
    tls: TlsSettings,
    data_ciphers: Sequence[str] = DEFAULT_DATA_CIPHERS,
    data_ciphers_fallback: str | None = None,
    timers: Timers | None = None,
    replay_window: int = 64,
    replay_seconds: float = 15.0,
    explicit_exit_notify: int = 0,
    proto: str = "UDPv4",  # as in the options string: UDPv4, UDPv6, TCPv4_CLIENT, ...
    tun_mtu: int = 1500,
    mssfix: int = 1492,
    mssfix_mode: Literal["mtu", "payload", "fixed"] = "mtu",
    comp_lzo_stub: bool = False,
    control_wrap: ControlWrap = PLAIN,
    auth: str = DEFAULT_AUTH,
    ciphername: str | None = None,
    peer_info: str | None = None,
    compression: str | None = None,
    allow_compression: str = "stub-only",
    dyn_tls_crypt: bool | None = None,
    peer_info_extra: Sequence[str] = (),
) -> SessionSettings:
    """`peer_info` replaces the client's IV_ lines (e.g. to play a pre-2.4 peer in tests);
    `peer_info_extra` are lines appended to the built ones (push-peer-info, setenv UV_*).

    `dyn_tls_crypt` (default: wherever the TLS exporter works) announces/accepts 2.6's
    dynamic tls-crypt for renegotiations."""
    timers = timers or Timers()
    outer = outer_overhead(proto)
    link_framing = register_stream_framing if proto.startswith("TCP") else None
    if dyn_tls_crypt is None:
        dyn_tls_crypt = ekm_supported()
    # The largest wrap any packet of this session may get: the configured one, or the dynamic
    # tls-crypt of renegotiations.
    reserved = max(control_wrap.reserved, DYNAMIC_RESERVED if dyn_tls_crypt else 0)
    occ_name, occ_auth, keysize = occ_cipher(
        data_ciphers, ciphername or data_ciphers_fallback, auth
    )
    return SessionSettings(
        is_client=is_client,
        tls_context=make_context(tls, server_side=not is_client),
        tls_settings=tls,
        options_string=options_string(
            role="tls-client" if is_client else "tls-server",
            proto=proto,
            tun_mtu=tun_mtu,
            cipher=occ_name,
            auth=occ_auth,
            keysize=keysize,
            comp_lzo=(compression or ("stub" if comp_lzo_stub else None)) is not None,
        ),
        data_ciphers=tuple(c.upper() for c in data_ciphers),
        data_ciphers_fallback=data_ciphers_fallback,
        auth=auth.upper(),
        peer_info=peer_info if peer_info is not None else (
            build_peer_info(ciphers=[c.upper() for c in data_ciphers], version=__version__,
                            compression=allow_compression, dyn_tls_crypt=dyn_tls_crypt,
                            extra=peer_info_extra)
            if is_client
            else None
        ),
        ping=timers.ping,
        ping_restart=timers.ping_restart,
        reneg_sec=timers.reneg_sec,
        hand_window=timers.hand_window,
        tls_timeout=timers.tls_timeout,
        tran_window=timers.tran_window,
        replay_window=replay_window,
        replay_seconds=replay_seconds,
        explicit_exit_notify=explicit_exit_notify,
        # tls-mtu holds the wrapped datagram (ssl.c: calc_control_channel_frame_overhead()).
        max_control_datagram=TLS_MTU - outer - framing_overhead(link_framing) - reserved,
        tun_mtu=tun_mtu,
        mssfix=mssfix,
        mssfix_mode=mssfix_mode,
        outer_overhead=outer,
        link_framing=link_framing,
        comp_lzo_stub=comp_lzo_stub,
        compression=compression,
        allow_compression=allow_compression,
        control_wrap=control_wrap,
        dyn_tls_crypt=dyn_tls_crypt,
        clock_offset=time.time() - time.monotonic(),
    )

