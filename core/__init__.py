"""core: the sans-I/O memory library (OpenVPN's buffer, frame and gc_arena design in Python).

No asyncio, no sockets, no clocks: only bounded memory and its geometry.
"""

from core.buffer import Buffer, BytesLike
from core.errors import BoundsError, FrameError, PoolError, PoolExhausted

__all__ = [
    "BoundsError",
    "Buffer",
    "BytesLike",
    "FrameError",
    "PoolError",
    "PoolExhausted",
]
