"""The event loop: uvloop's (a hard dependency, pyproject.toml)."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    import uvloop  # (imported where used: ~0.09 s that config checks and --help never pay)

    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
