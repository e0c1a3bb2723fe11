"""Sans-I/O OpenVPN 2.6 (UDP, TLS mode): codec, reliability, TLS, key-method 2, data channel.

Nothing in this package imports asyncio, sockets or reads a clock; callers pass ``now``.
Import the modules directly (``from tunnel.protocol.codec import parse_control``); this file
deliberately re-exports nothing so that importing one module never drags in the others.
"""
