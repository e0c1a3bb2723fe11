"""core: the sans-I/O memory library (OpenVPN's buffer, frame and gc_arena design in Python).

No asyncio, no sockets, no clocks: only bounded memory and its geometry.
"""

from core.arena import GcArena
from core.buffer import Buffer, BytesLike
from core.errors import BoundsError, FrameError, PoolError, PoolExhausted
from core.frame import Frame, FrameBuilder, Registration
from core.pool import BlockPool, BufferPool, PoolStats, ReleasedBuffer, RunPool

__all__ = [
    "BlockPool",
    "BoundsError",
    "Buffer",
    "BufferPool",
    "BytesLike",
    "Frame",
    "FrameBuilder",
    "FrameError",
    "GcArena",
    "PoolError",
    "PoolExhausted",
    "PoolStats",
    "Registration",
    "ReleasedBuffer",
    "RunPool",
]
