"""A GRO run opened in batch: the datagrams of one read, of one size, opened as rows.

One `recvmsg` with `UDP_GRO` hands over up to 64 KB of datagrams of one sender end to end
(tunnel/io/gso.py). Taken one at a time, each pays the whole per-packet path (~10 Python calls
and as many memoryview slices: copy into the pooled buffer, `receive`, `decrypt`, `open`,
the replay window, mssfix, the coalescer's checks and copy). Here the run's full-size
datagrams are handled together:

  1. ONE copy puts every datagram in a row of a 2D numpy array (the ciphertext at byte 24
     of each row whatever the opcode, 16 bytes of room behind it);
  2. the endpoint checks the run once (its peer's address, the session, the key) and
     `DataKey.open_rows` authenticates, then replay-checks, each row in one loop of
     `decrypt_into` calls: per packet, in that order, nothing weakened;
  3. what the session checks per packet (keepalive ping, OCC, a SYN for mssfix) is asked of
     all rows at once, and only the unusual rows are looked at one by one;
  4. `TunCoalescer.write_rows`: the merge rules of `tcp_gro_receive` checked for all rows in
     a few vectorised comparisons, the payloads appended to the coalescer's run in one copy
     (the rows of a bulk TCP flow become one GSO frame); rows that cannot be merged that way
     go through the coalescer one by one.

The run's last datagram, when shorter, and every run the endpoint does not take (another
sender, a control packet, a key we cannot batch) go the per-packet way.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from core import Buffer, RunPool
from tunnel.io.batch_kinds import CONTROL, REFUSED
from tunnel.io.offload import VNET_HDR_SIZE, TunCoalescer
from tunnel.protocol.constants import OPCODE_SHIFT, Opcode
from tunnel.protocol.verdicts import CONSUMED, DROPPED, TO_TUN

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["ROWS_RUN_SIZE", "RunOpener", "RunRows", "attach_run_opener", "run_opener_wanted"]

Address = tuple[str, int]

_AT: Final = 24  # where a row's ciphertext (then plaintext) starts
_TAG: Final = 16
# Plain ints for the opcode compare (an IntEnum member's lookup costs more than a global's).
_V2_OP: Final = int(Opcode.P_DATA_V2)
_V1_OP: Final = int(Opcode.P_DATA_V1)
_MAX_ROWS: Final = 64
_ROW_MAX: Final = 2048  # datagrams larger than this go the per-packet way
_STRIDE: Final = _AT + _ROW_MAX + _TAG
ROWS_RUN_SIZE: Final = 47 * _STRIDE
"""The run block the rows need: 47 rows take a GRO read of 1400-byte datagrams in one pass
(a longer run is taken in chunks of what fits)."""
_TCP: Final = socket.IPPROTO_TCP
_SYN: Final = 0x02

OpenRun = Callable[["RunRows", Address, float], "list[int] | None"]
Fault = Callable[[str, Exception], None]


class RunRows:
    """The full-size datagrams of one GRO run as rows (see the module docstring); what
    `Client.open_rows`/`Server.open_rows`/`Session.open_rows`/`DataKey.open_rows` take
    (`ReceivedRows`)."""

    __slots__ = ("_ct_views", "_flat", "_lead", "_np", "_out_views", "_rows", "count",
                 "first_byte", "max_rows", "plain_size", "run", "segment")

    def __init__(self, run: Buffer | None = None) -> None:
        """`run`: the block the rows live in, from a `RunPool` (held for the owner's life; its
        size says how many rows fit, at most 64); None: a pool of its own."""
        import numpy  # (imported where used: only batch readers need it)

        self._np = numpy
        self.run = run if run is not None else RunPool(ROWS_RUN_SIZE, 1).acquire()
        view = self.run.tailroom_view()
        self.max_rows = min(_MAX_ROWS, len(view) // _STRIDE)
        if self.max_rows < 2:
            raise ValueError(f"a rows block needs at least {2 * _STRIDE} bytes, got {len(view)}")
        self._flat = view[: self.max_rows * _STRIDE]
        self._rows: npt.NDArray[np.uint8] = numpy.frombuffer(self._flat, numpy.uint8).reshape(
            self.max_rows, _STRIDE)
        self._ct_views: dict[int, tuple[list[memoryview], list[memoryview]]] = {}
        self._out_views: tuple[list[memoryview], list[memoryview]] = ([], [])
        self._lead = 0
        self.count = self.first_byte = self.plain_size = self.segment = 0

    def load(self, first: memoryview, rest: memoryview, segment: int, count: int) -> bool:
        """Copy `count` datagrams of `segment` bytes into the rows: the first from `first`,
        the others end to end from `rest`. False (nothing kept) if they are not all data
        packets with one first byte, or not of a size this path takes."""
        if not 2 <= count <= self.max_rows or not 40 <= segment <= _ROW_MAX:
            return False
        first_byte = first[0]
        op = first_byte >> OPCODE_SHIFT
        if op == _V2_OP:
            lead = 0
        elif op == _V1_OP:
            lead = 3  # op(1) packet-id(4) tag(16): the ciphertext at 24 all the same
        else:
            return False
        np = self._np
        rows = self._rows
        rows[0, lead : lead + segment] = np.frombuffer(first, np.uint8, segment)
        rows[1:count, lead : lead + segment] = np.frombuffer(
            rest, np.uint8, (count - 1) * segment).reshape(count - 1, segment)
        if not (rows[:count, lead] == first_byte).all():
            return False
        self._lead = lead
        self.count = count
        self.segment = segment
        self.first_byte = first_byte
        self.plain_size = segment - _AT + lead
        return True

    def prepare(
        self, v2: bool,
    ) -> tuple[list[memoryview], list[memoryview], list[memoryview], list[int]]:
        count = self.count
        rows = self._rows[:count]
        end = _AT + self.plain_size
        rows[:, end : end + _TAG] = rows[:, 8:_AT]  # each tag behind its ciphertext
        be = rows[:, :8].view(">u4")
        pids: list[int] = be[:, 1].tolist()
        views = self._ct_views.get(end)
        if views is None:
            if len(self._ct_views) > 8:
                self._ct_views.clear()
            flat = self._flat
            starts = range(0, self.max_rows * _STRIDE, _STRIDE)
            views = ([flat[s + _AT : s + end + _TAG] for s in starts],
                     [flat[s + _AT : s + end] for s in starts])
            self._ct_views[end] = views
        self._out_views = views
        flat = self._flat
        starts = range(0, count * _STRIDE, _STRIDE)
        aads = [flat[s : s + 8] for s in starts] if v2 else [flat[s + 4 : s + 8] for s in starts]
        return views[0][:count], views[1][:count], aads, pids

    def unusual(self) -> list[int]:
        rows = self._rows[: self.count]
        ip = rows[:, _AT]
        odd = (ip != 0x45) | ((rows[:, _AT + 9] == _TCP) & (rows[:, _AT + 33] & _SYN != 0))
        if self.plain_size < 40:
            odd[:] = True
        found: list[int] = self._np.flatnonzero(odd).tolist()
        return found

    def header(self) -> int | None:
        rows = self._rows[: self.count]
        if self._lead or not self.count:
            return None  # P_DATA_V1 rows: no peer-id to share
        words = rows[:, :4].view(">u4")[:, 0]
        first = int(words[0])
        return first if bool((words == first).all()) else None

    def foreign_sources(self, source: int) -> list[int]:
        rows = self._rows[: self.count]
        if self.plain_size < 20:
            return list(range(self.count))
        sources = rows[:, _AT + 12 : _AT + 16].view(">u4")[:, 0]
        odd = ((rows[:, _AT] >> 4) != 4) | (sources != source)
        found: list[int] = self._np.flatnonzero(odd).tolist()
        return found

    def plain(self, index: int) -> memoryview:
        start = index * _STRIDE + _AT
        return self._flat[start : start + self.plain_size]

    def frame(self, index: int) -> memoryview:
        """Row `index`'s plaintext with the `VNET_HDR_SIZE` bytes in front of it (a virtio-net
        header's place: `TunCoalescer.write_row`)."""
        start = index * _STRIDE + _AT
        return self._flat[start - VNET_HDR_SIZE : start + self.plain_size]

    @property
    def rows(self) -> npt.NDArray[np.uint8]:
        return self._rows


class RunOpener:
    """The glue between the inbound flow and the endpoint: `take(first, rest, segment, size,
    addr, now)` is what `inbound_batch` offers a GRO run of at least two datagrams; it returns
    (datagrams it handled from the front, CONTROL/REFUSED bits); 0 handled means nothing was
    done and the run goes the per-packet way."""

    __slots__ = ("_coalescer", "_open", "rows")

    def __init__(
        self, open_run: OpenRun, coalescer: TunCoalescer, run: Buffer | None = None,
    ) -> None:
        """`run`: the rows' block (`RunRows`)."""
        self._open = open_run
        self._coalescer = coalescer
        self.rows = RunRows(run)

    def take(
        self, first: memoryview, rest: memoryview, segment: int, size: int, addr: Address,
        now: float,
    ) -> tuple[int, int]:
        rows = self.rows
        total = size // segment
        done = kinds = 0
        most = rows.max_rows
        while total - done >= 2:
            count = min(total - done, most)
            head = first if not done else rest[(done - 1) * segment :]
            if not rows.load(head, rest[done * segment :], segment, count):
                break
            verdicts = self._open(rows, addr, now)
            if verdicts is None:
                break
            done += count
            kinds |= self._write(rows, count, verdicts)
        return done, kinds

    def _write(self, rows: RunRows, count: int, verdicts: list[int]) -> int:
        coalescer = self._coalescer
        if verdicts.count(TO_TUN) == count and coalescer.write_rows(rows.rows, count, _AT,
                                                                    rows.plain_size):
            return 0
        kinds = 0
        for index, verdict in enumerate(verdicts):
            if verdict == TO_TUN:
                coalescer.write_row(rows.plain(index), rows.frame(index))
            elif verdict == CONSUMED:
                kinds |= CONTROL
            elif verdict == DROPPED:
                kinds |= REFUSED
        return kinds


def run_opener_wanted(endpoint: object, coalesced: bool) -> bool:
    """Whether `attach_run_opener` makes one (so the driver counts a run block for it): the
    endpoint opens rows and the device takes coalesced frames."""
    return coalesced and getattr(endpoint, "open_rows", None) is not None


def attach_run_opener(
    endpoint: object, coalescer: TunCoalescer | None, runs: RunPool | None = None,
) -> RunOpener | None:
    """A `RunOpener` where the endpoint can open rows (`open_rows`) and the device takes
    coalesced frames, its rows in a block of `runs` (held; None: a pool of its own); None
    otherwise (every datagram goes the per-packet way)."""
    if coalescer is None or not run_opener_wanted(endpoint, True):
        return None
    open_run = getattr(endpoint, "open_rows", None)
    assert open_run is not None
    return RunOpener(open_run, coalescer, runs.acquire() if runs is not None else None)
