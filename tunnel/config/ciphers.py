"""Data-channel cipher names: which ones this tunnel implements and how a list is read.

OpenVPN looks cipher names up case-insensitively (``data-ciphers aes-256-gcm`` works) and prints
them in OpenSSL's canonical upper-case form; a ``?`` in front of a name (2.6) makes it optional:
skipped, with a note, when the library lacks it (``ssl_ncp.c: mutate_ncp_cipher_list()``).
"""

from __future__ import annotations

from tunnel.protocol.datacipher import AUTH_DIGESTS, DATA_CIPHERS, DEFAULT_DATA_CIPHERS

__all__ = [
    "AUTH_DIGESTS",
    "DEFAULT_DATA_CIPHERS",
    "SUPPORTED_DATA_CIPHERS",
    "canonical_cipher",
    "read_cipher_list",
]

# The ciphers our data channel implements: the AEAD ones in OpenVPN 2.6's default preference
# order, then CBC + HMAC; the default list is 2.6's, AEAD only. One list, the data channel's
# (tunnel/protocol/datacipher.py), so a new kind is accepted by the config as it lands.
SUPPORTED_DATA_CIPHERS: tuple[str, ...] = DATA_CIPHERS

_BY_UPPER = {name.upper(): name for name in SUPPORTED_DATA_CIPHERS}


def canonical_cipher(name: str) -> str | None:
    """The canonical spelling of a supported cipher, or None if we do not implement it."""
    return _BY_UPPER.get(name.upper())


def read_cipher_list(text: str) -> tuple[list[str], list[str], list[str]]:
    """Split ``A:B:?C`` into (supported, unsupported-required, unsupported-optional).

    Supported names come back canonical, in the given order, without duplicates.
    """
    chosen: list[str] = []
    missing: list[str] = []
    skipped: list[str] = []
    for item in text.split(":"):
        optional = item.startswith("?")
        name = item[1:] if optional else item
        canonical = canonical_cipher(name)
        if canonical is not None:
            if canonical not in chosen:
                chosen.append(canonical)
        elif optional:
            skipped.append(name)
        else:
            missing.append(name)
    return chosen, missing, skipped
