"""`Buffer`: OpenVPN's `struct buffer` - a window `[offset, offset+len)` in a fixed block.

The block is a `memoryview` of exactly `capacity` bytes: either of the buffer's own bytearray
(`Buffer(capacity)`) or of one block of a pool slab (`Buffer.over(block)`). Every access goes
through that view, so no operation can reach a byte outside the block even if a check were wrong:
the view itself refuses. The checks exist to make the failure a `BoundsError` raised *before*
anything moves, so a failed operation leaves offset, length and contents as they were.

Three pitfalls of Python's slicing and `struct` make the explicit checks necessary: negative
offsets count from the end (`pack_into(view, -4, ...)` writes the block's last bytes), slices
clamp silently, and `pack_into` zeroes its destination *before* it validates the value (so u16
and u32 values are range-checked together with the bounds, not left to `struct`). Each operation
therefore computes its new bounds, checks them once, does the one memory operation that can still
fail (a wrongly shaped argument), and only then updates `offset`/`len`.

Memoryviews handed out (`data`, `read`, `reserve_*`, `tailroom_view`) alias the block: they stay
valid after the buffer moves on, and a later prepend or a reuse of the block overwrites what they
show. Copy (`bytes(view)`) what must outlive the packet. A pooled block is not cleared on reuse
(as in OpenVPN): bytes reserved with `reserve_tail`/`reserve_head` hold whatever was there, so a
caller must write every byte it reserves.
"""

from __future__ import annotations

import struct
from typing import Protocol, TypeAlias

from core.errors import BoundsError

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""What `append`/`prepend` accept: anything with one byte per item (a 1-D 'B'-format view)."""

# Precompiled, network byte order; bound methods so the hot path skips one attribute lookup.
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_pack_u16 = _U16.pack_into
_pack_u32 = _U32.pack_into
_unpack_u16 = _U16.unpack_from
_unpack_u32 = _U32.unpack_from

# buf_chomp strips these from the end: CR, LF and NUL (OpenVPN's CC_CRLF | CC_NULL).
_CHOMPED = frozenset(b"\r\n\x00")


class BlockOwner(Protocol):
    """Whoever lent a buffer its block and takes it back (a `BufferPool`)."""

    def release(self, buf: Buffer) -> None: ...


def _short(op: str, need: int, have: int) -> BoundsError:
    return BoundsError(f"{op}: needs {need} byte(s), {have} available")


def _bad_value(op: str, value: object) -> BoundsError:
    return BoundsError(f"{op}: value {value!r} does not fit the field")


def _refused(op: str, need: int, have: int, value: int, largest: int) -> BoundsError:
    if need > have:
        return _short(op, need, have)
    return BoundsError(f"{op}: value {value!r} outside [0, {largest}]")


def _not_int(op: str, value: object) -> TypeError:
    # struct has zeroed the field's bytes in the head/tailroom (never the contents) by now;
    # mypy --strict rejects such a call, so this is a typing bug reaching run time.
    return TypeError(f"{op}: needs an int, got {type(value).__name__}")


class Buffer:
    """A bounded window into one block; see the module docstring for the guarantees."""

    __slots__ = ("_cap", "_home", "_len", "_mem", "_off")

    _mem: memoryview
    _cap: int
    _off: int
    _len: int
    _home: BlockOwner | None

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise BoundsError(f"capacity must be >= 0, got {capacity}")
        self._mem = memoryview(bytearray(capacity))
        self._cap = capacity
        self._off = 0
        self._len = 0
        self._home = None

    @classmethod
    def over(cls, block: memoryview | bytearray) -> Buffer:
        """Wrap an existing writable block (a pool block); the buffer starts empty at offset 0."""
        mem = memoryview(block)  # our own view: the caller releasing theirs cannot break ours
        if mem.readonly:
            raise ValueError("Buffer.over needs a writable block")
        if not mem.c_contiguous:
            raise ValueError("Buffer.over needs a contiguous block")
        if mem.format != "B" or mem.ndim != 1:
            mem = mem.cast("B")
        buf = cls.__new__(cls)
        buf._mem = mem
        buf._cap = mem.nbytes
        buf._off = 0
        buf._len = 0
        buf._home = None
        return buf

    # -- geometry ---------------------------------------------------------------------------

    def reset(self, headroom: int = 0) -> None:
        """Re-arm a reused buffer: empty, contents to start at `headroom` (OpenVPN's buf_init)."""
        if not 0 <= headroom <= self._cap:
            raise BoundsError(f"reset: headroom {headroom} outside [0, {self._cap}]")
        self._off = headroom
        self._len = 0

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def offset(self) -> int:
        return self._off

    @property
    def headroom(self) -> int:
        return self._off

    @property
    def tailroom(self) -> int:
        return self._cap - self._off - self._len

    def __len__(self) -> int:
        return self._len

    @property
    def data(self) -> memoryview:
        """The contents, zero-copy (aliases the block)."""
        off = self._off
        return self._mem[off : off + self._len]

    def tailroom_view(self) -> memoryview:
        """All the tailroom, writable, without claiming it: `recv_into` it, then `inc_len(n)`."""
        return self._mem[self._off + self._len : self._cap]

    # -- append side ------------------------------------------------------------------------

    def append(self, data: BytesLike) -> None:
        n = len(data)
        start = self._off + self._len
        end = start + n
        if end > self._cap:
            raise _short("append", n, self._cap - start)
        self._mem[start:end] = data  # raises, writing nothing, if `data` is not 1 byte per item
        self._len += n

    def append_u8(self, value: int) -> None:
        pos = self._off + self._len
        if pos >= self._cap:
            raise _short("append_u8", 1, 0)
        try:
            self._mem[pos] = value
        except ValueError:  # memoryview checks the range before it writes
            raise _bad_value("append_u8", value) from None
        self._len += 1

    def append_u16(self, value: int) -> None:
        pos = self._off + self._len
        if pos + 2 > self._cap or not 0 <= value <= 0xFFFF:
            raise _refused("append_u16", 2, self._cap - pos, value, 0xFFFF)
        try:
            _pack_u16(self._mem, pos, value)
        except struct.error:  # not an int: the range check above let it through
            raise _not_int("append_u16", value) from None
        self._len += 2

    def append_u32(self, value: int) -> None:
        pos = self._off + self._len
        if pos + 4 > self._cap or not 0 <= value <= 0xFFFFFFFF:
            raise _refused("append_u32", 4, self._cap - pos, value, 0xFFFFFFFF)
        try:
            _pack_u32(self._mem, pos, value)
        except struct.error:  # not an int: the range check above let it through
            raise _not_int("append_u32", value) from None
        self._len += 4

    def reserve_tail(self, n: int) -> memoryview:
        """Claim n bytes after the contents; returns them writable (OpenVPN's buf_write_alloc)."""
        start = self._off + self._len
        end = start + n
        if n < 0 or end > self._cap:
            raise _short("reserve_tail", n, self._cap - start)
        view = self._mem[start:end]
        self._len += n
        return view

    def inc_len(self, n: int) -> None:
        """Grow (n > 0) or shrink (n < 0) the contents at the tail (OpenVPN's buf_inc_len)."""
        new_len = self._len + n
        if new_len < 0 or self._off + new_len > self._cap:
            raise _short("inc_len", n, self._cap - self._off - self._len)
        self._len = new_len

    def truncate(self, n: int) -> None:
        """Keep the first n bytes of the contents."""
        if not 0 <= n <= self._len:
            raise _short("truncate", n, self._len)
        self._len = n

    # -- prepend side -----------------------------------------------------------------------

    def prepend(self, data: BytesLike) -> None:
        n = len(data)
        off = self._off - n
        if off < 0:
            raise _short("prepend", n, self._off)
        self._mem[off : self._off] = data
        self._off = off
        self._len += n

    def prepend_u8(self, value: int) -> None:
        off = self._off - 1
        if off < 0:
            raise _short("prepend_u8", 1, 0)
        try:
            self._mem[off] = value
        except ValueError:  # memoryview checks the range before it writes
            raise _bad_value("prepend_u8", value) from None
        self._off = off
        self._len += 1

    def prepend_u16(self, value: int) -> None:
        off = self._off - 2
        if off < 0 or not 0 <= value <= 0xFFFF:
            raise _refused("prepend_u16", 2, self._off, value, 0xFFFF)
        try:
            _pack_u16(self._mem, off, value)
        except struct.error:  # not an int: the range check above let it through
            raise _not_int("prepend_u16", value) from None
        self._off = off
        self._len += 2

    def prepend_u32(self, value: int) -> None:
        off = self._off - 4
        if off < 0 or not 0 <= value <= 0xFFFFFFFF:
            raise _refused("prepend_u32", 4, self._off, value, 0xFFFFFFFF)
        try:
            _pack_u32(self._mem, off, value)
        except struct.error:  # not an int: the range check above let it through
            raise _not_int("prepend_u32", value) from None
        self._off = off
        self._len += 4

    def reserve_head(self, n: int) -> memoryview:
        """Claim n bytes in front of the contents; returns them writable (OpenVPN's buf_prepend)."""
        end = self._off
        off = end - n
        if n < 0 or off < 0:
            raise _short("reserve_head", n, end)
        view = self._mem[off:end]
        self._off = off
        self._len += n
        return view

    # -- read side (consumes from the front) ------------------------------------------------

    def read(self, n: int) -> memoryview:
        if not 0 <= n <= self._len:
            raise _short("read", n, self._len)
        off = self._off
        end = off + n
        view = self._mem[off:end]
        self._off = end
        self._len -= n
        return view

    def read_u8(self) -> int:
        if self._len < 1:
            raise _short("read_u8", 1, 0)
        off = self._off
        value = self._mem[off]
        self._off = off + 1
        self._len -= 1
        return value

    def read_u16(self) -> int:
        if self._len < 2:
            raise _short("read_u16", 2, self._len)
        off = self._off
        value: int = _unpack_u16(self._mem, off)[0]
        self._off = off + 2
        self._len -= 2
        return value

    def read_u32(self) -> int:
        if self._len < 4:
            raise _short("read_u32", 4, self._len)
        off = self._off
        value: int = _unpack_u32(self._mem, off)[0]
        self._off = off + 4
        self._len -= 4
        return value

    def peek_u8(self) -> int:
        if self._len < 1:
            raise _short("peek_u8", 1, 0)
        return self._mem[self._off]

    def peek_u16(self) -> int:
        if self._len < 2:
            raise _short("peek_u16", 2, self._len)
        value: int = _unpack_u16(self._mem, self._off)[0]
        return value

    def peek_u32(self) -> int:
        if self._len < 4:
            raise _short("peek_u32", 4, self._len)
        value: int = _unpack_u32(self._mem, self._off)[0]
        return value

    def advance(self, n: int) -> None:
        """Drop n bytes from the front (OpenVPN's buf_advance)."""
        if not 0 <= n <= self._len:
            raise _short("advance", n, self._len)
        self._off += n
        self._len -= n

    # -- sub-buffers and copies -------------------------------------------------------------

    def sub(self, n: int) -> Buffer:
        """Claim the next n bytes of tailroom and return an empty child buffer over exactly them.

        As OpenVPN's buf_sub: the parent's length grows by n, and the child (capacity n,
        offset 0) fills that space in place. The child cannot reach beyond its n bytes.
        """
        start = self._off + self._len
        end = start + n
        if n < 0 or end > self._cap:
            raise _short("sub", n, self._cap - start)
        child = Buffer.over(self._mem[start:end])
        self._len += n
        return child

    def copy_from(self, other: Buffer) -> None:
        """Append the contents of `other` (OpenVPN's buf_copy)."""
        self.append(other.data)

    # -- string helpers (control channel, not the data path) --------------------------------

    def startswith(self, prefix: BytesLike) -> bool:
        """True when the contents begin with `prefix` (OpenVPN's buf_string_match_head)."""
        n = len(prefix)
        if n > self._len:
            return False
        off = self._off
        return self._mem[off : off + n] == prefix

    def equals(self, other: BytesLike | Buffer) -> bool:
        """True when the contents are exactly `other` (OpenVPN's buf_string_match / buf_equal)."""
        if isinstance(other, Buffer):
            other = other.data
        return len(other) == self._len and self.data == other

    def write_text(self, fmt: str, *args: object) -> bool:
        """Append `fmt % args` as UTF-8, truncated to the tailroom like OpenVPN's buf_printf.

        Never raises for lack of room: it writes what fits, cut at a character boundary so the
        text stays valid UTF-8, and returns False when it had to cut. No NUL is written; a
        protocol that wants one appends it.
        """
        encoded = (fmt % args if args else fmt).encode()
        room = self.tailroom
        fits = len(encoded) <= room
        if not fits:
            encoded = encoded[:room].decode(errors="ignore").encode()  # drop a split character
        self.append(encoded)
        return fits

    def chomp(self) -> int:
        """Strip trailing CR, LF and NUL bytes (OpenVPN's buf_chomp); returns how many."""
        mem = self._mem
        off = self._off
        n = self._len
        while n and mem[off + n - 1] in _CHOMPED:
            n -= 1
        removed = self._len - n
        self._len = n
        return removed

    def parse_token(self, sep: str = ",") -> str | None:
        """Consume and return the next token, up to `sep` or NUL (OpenVPN's buf_parse).

        The separator is consumed with the token; at the end of the contents, the rest is the
        token. Returns None when nothing is left. Invalid UTF-8 raises `UnicodeDecodeError` (a
        ValueError) and consumes nothing.
        """
        if not self._len:
            return None
        delim = ord(sep)
        chunk = self.data.tobytes()
        end = len(chunk)
        for stop in (delim, 0):
            found = chunk.find(stop, 0, end)
            if found >= 0:
                end = found
        token = chunk[:end].decode()
        consumed = min(end + 1, self._len)
        self._off += consumed
        self._len -= consumed
        return token

    def __repr__(self) -> str:
        return f"<{type(self).__name__} capacity={self._cap} offset={self._off} len={self._len}>"
