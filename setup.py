"""The one compiled part: tunnel._aead (tunnel/_aead.c), the data channel's AEAD with a
persistent libcrypto context per key, the lone packet's hop on it (tunnel/_lane.c), the
partial checksum's completion (tunnel/_csum.c), a super-packet's segments cut into rows
(tunnel/_tso.c) and a TSO device's read-ahead (tunnel/_readahead.c).
Optional: where it does not build (no compiler, no libssl-dev headers) the install goes on
and the data channel uses `cryptography` (tunnel/protocol/aead.py says which one runs;
`tunnel --version` prints it)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tunnel._aead",
            sources=["tunnel/_aead.c", "tunnel/_lane.c", "tunnel/_csum.c",
                     "tunnel/_tso.c", "tunnel/_readahead.c"],
            depends=["tunnel/_aead.h"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit"],
            optional=True,
        )
    ]
)
