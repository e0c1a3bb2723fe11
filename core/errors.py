"""The exceptions of the memory library.

Bounds and geometry problems are `ValueError`s (a caller passed a size or a value that does not
fit). Pool misuse - double release, a foreign buffer, use after release - is a `RuntimeError`:
it is a lifetime bug in the caller, not bad input, and must never be swallowed with the
`ValueError`s a packet parser catches. `PoolExhausted` is a `PoolError` so one `except` covers
every pool problem, but the data path catches it alone to drop a packet under back-pressure.
"""

from __future__ import annotations


class BoundsError(ValueError):
    """A buffer operation would leave the buffer's block; the buffer is unchanged."""


class FrameError(ValueError):
    """No packet geometry satisfies the registrations and the MTU limits."""


class PoolError(RuntimeError):
    """A buffer's lifetime was misused: double release, foreign buffer, use after release."""


class PoolExhausted(PoolError):
    """Every block of a bounded pool is in use; the pool never grows behind the caller's back."""
