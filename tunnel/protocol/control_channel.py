"""The wraps one session's control datagrams go through (tunnel/protocol/wrap/).

Every key_id uses the configured wrap (none, tls-auth, tls-crypt, tls-crypt-v2) through its
`WrapChannel` (our send packet-id, the peer's replay window) - except that once both peers
agreed on 2.6's dynamic tls-crypt (the server pushes `protocol-flags dyn-tls-crypt`),
renegotiations (key_id > 0) go through a wrap derived from the key_id 0 TLS session's exporter
(wrap/dynamic.py). Control datagrams are built (by the key states' reliability layers) and
sealed in place in a block of `pool`: the wrap's own frame, one block, each datagram copied out
before the next is built.
"""

from __future__ import annotations

from core import Buffer, BufferPool
from tunnel.protocol.settings import SessionSettings
from tunnel.protocol.tls import TlsSession
from tunnel.protocol.wrap.base import WrapChannel, control_frame
from tunnel.protocol.wrap.dynamic import DYNAMIC_TLS_CRYPT_LABEL, dynamic_wrap

__all__ = ["ControlChannel"]

_KEY_ID_MASK = 7


class ControlChannel:
    def __init__(self, settings: SessionSettings, channel: WrapChannel | None = None, *,
                 server: bool) -> None:
        self._settings = settings
        self._server = server
        self.initial = channel or settings.control_wrap.channel(
            replay_window=settings.replay_window,
            replay_seconds=settings.replay_seconds,
            clock_offset=settings.clock_offset,
        )
        self.reneg: WrapChannel | None = None  # dynamic tls-crypt, once agreed
        self.pool = BufferPool(control_frame(settings.control_wrap,
                                             dynamic=settings.dyn_tls_crypt), 1)

    def _for(self, first_byte: int) -> WrapChannel:
        if first_byte & _KEY_ID_MASK and self.reneg is not None:
            return self.reneg
        return self.initial

    def open(self, buf: Buffer, now: float) -> bool:
        """Tag and replay check of one received datagram, unwrapped in place; False refuses."""
        data = buf.data
        channel = self._for(data[0]) if data else self.initial
        return channel.open(buf, now)

    def seal(self, buf: Buffer, now: float) -> None:
        """One outgoing control datagram (in a block of `pool`) to its wire form, in place."""
        self._for(buf.peek_u8()).seal(buf, now)

    def start_dynamic(self, tls: TlsSession | None) -> bool:
        """Derive the renegotiation wrap from the key_id 0 TLS session; False if we cannot."""
        if self.reneg is not None:
            return True
        if tls is None:
            return False
        exported = tls.export_keying_material(DYNAMIC_TLS_CRYPT_LABEL, 256)
        if exported is None:
            return False
        s = self._settings
        wrap = dynamic_wrap(exported, self.initial.wrap, server=self._server)
        self.reneg = wrap.channel(replay_window=s.replay_window,
                                  replay_seconds=s.replay_seconds,
                                  clock_offset=s.clock_offset)
        return True
