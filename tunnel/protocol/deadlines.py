"""One deadline structure for all the server's session timers: a heap with lazy deletion.

`schedule(item, deadline)` replaces the item's previous deadline (or clears it with None);
`earliest()` is the next deadline over all items; `pop_due(now)` hands out the items whose
deadline has come, each once, and forgets their deadlines (the caller re-schedules them).
Every operation is O(log n) in the number of items, so a timer event costs the same with one
session as with thousands.

Superseded entries stay in the heap until they reach its top; they hold an int, never the
item, so a removed session is freed at once. When stale entries outnumber live ones the heap
is rebuilt, which bounds its size to about twice the number of items.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

__all__ = ["DeadlineHeap"]

T = TypeVar("T")


class DeadlineHeap(Generic[T]):
    __slots__ = ("_entry_of", "_heap", "_item_of", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._item_of: dict[int, T] = {}  # live entry -> item
        self._entry_of: dict[T, int] = {}  # item -> its live entry
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entry_of)

    def __contains__(self, item: T) -> bool:
        return item in self._entry_of

    def schedule(self, item: T, deadline: float | None) -> None:
        old = self._entry_of.pop(item, None)
        if old is not None:
            del self._item_of[old]
        if deadline is None:
            return
        entry = next(self._seq)
        self._entry_of[item] = entry
        self._item_of[entry] = item
        heapq.heappush(self._heap, (deadline, entry))
        if len(self._heap) > 2 * len(self._entry_of) + 64:
            self._rebuild()

    def remove(self, item: T) -> None:
        self.schedule(item, None)

    def earliest(self) -> float | None:
        heap = self._heap
        while heap and heap[0][1] not in self._item_of:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[T]:
        due: list[T] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _deadline, entry = heapq.heappop(heap)
            item = self._item_of.pop(entry, None)
            if item is not None:
                del self._entry_of[item]
                due.append(item)
        return due

    def _rebuild(self) -> None:
        live = self._item_of
        self._heap = [e for e in self._heap if e[1] in live]
        heapq.heapify(self._heap)
