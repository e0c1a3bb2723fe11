"""The live progress line of `tunnel demo` on a terminal (rich): packets verified each way,
Mbit/s so far, elapsed time. It is redrawn by the demo's own event loop (no refresh thread
competing with the data path) and left on screen, finished, above the summary.

Off a terminal the demo prints no progress at all, so a log stays a clean log: the CLI only
asks for this when stderr is a terminal.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

REFRESH_SECONDS = 0.25


class DemoProgress:
    """`with DemoProgress(packets, size) as p: p.update(to_server, to_client)`."""

    def __init__(self, packets_each_way: int, size: int, console: Console | None = None):
        self._each_way = packets_each_way
        self._size = size
        self._t0 = time.perf_counter()
        width = len(str(packets_each_way))
        self._progress = Progress(
            TextColumn("  demo"),
            BarColumn(bar_width=24),
            TextColumn(f"to server {{task.fields[to_server]:>{width}}}"),
            TextColumn(f"to client {{task.fields[to_client]:>{width}}} / {packets_each_way}"),
            TextColumn("{task.fields[mbit]:>7.1f} Mbit/s"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            auto_refresh=False,
        )
        self._task: TaskID = self._progress.add_task(
            "demo", total=2 * packets_each_way, to_server=0, to_client=0, mbit=0.0)

    def __enter__(self) -> DemoProgress:
        self._t0 = time.perf_counter()
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.refresh()
        self._progress.stop()

    def update(self, to_server: int, to_client: int) -> None:
        moved = to_server + to_client
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        self._progress.update(self._task, completed=moved, to_server=to_server,
                              to_client=to_client, mbit=moved * self._size * 8 / seconds / 1e6)
        self._progress.refresh()
