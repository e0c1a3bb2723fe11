"""Control-channel wraps: none, tls-auth, tls-crypt, tls-crypt-v2 (see `base.py` for the seam)."""

from tunnel.protocol.wrap.base import (
    PLAIN,
    ControlWrap,
    LongReplayWindow,
    Opened,
    PlainWrap,
    WrapChannel,
)
from tunnel.protocol.wrap.keyfile import KeyFileError, format_static_key, parse_static_key
from tunnel.protocol.wrap.tls_auth import TlsAuthWrap, canonical_digest
from tunnel.protocol.wrap.tls_crypt import TlsCryptWrap
from tunnel.protocol.wrap.tls_crypt_v2 import TlsCryptV2ClientWrap, TlsCryptV2ServerWrap
from tunnel.protocol.wrap.v2keys import ClientKey, ServerKey

__all__ = [
    "PLAIN",
    "ClientKey",
    "ControlWrap",
    "KeyFileError",
    "LongReplayWindow",
    "Opened",
    "PlainWrap",
    "ServerKey",
    "TlsAuthWrap",
    "TlsCryptV2ClientWrap",
    "TlsCryptV2ServerWrap",
    "TlsCryptWrap",
    "WrapChannel",
    "canonical_digest",
    "format_static_key",
    "parse_static_key",
]
