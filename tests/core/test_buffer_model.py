"""Property-based tests: random operation sequences on a Buffer beside a reference model.

The buffer under test wraps the *middle* block of a three-block slab whose outer blocks hold
sentinel bytes. The model is the plainest possible one: a bytearray copy of the block plus
`offset` and `length`, updated with slice arithmetic. After every step the state machine checks
that the buffer and the model agree on offset, length, contents and *every byte of the block*
(so a failed operation provably changed nothing), and that both neighbours still hold their
sentinels (so nothing ever wrote outside the block).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from core import BoundsError, Buffer

T = TypeVar("T")

MAX_CAPACITY = 40
LEFT_SENTINEL = 0xA5
RIGHT_SENTINEL = 0x5A

sizes = st.integers(min_value=-2, max_value=MAX_CAPACITY + 2)
small_bytes = st.binary(max_size=12)


def field_values(largest: int) -> st.SearchStrategy[int]:
    """Mostly valid values, sometimes one just outside the field."""
    return st.one_of(
        st.integers(min_value=0, max_value=largest),
        st.sampled_from([0, largest, -1, largest + 1]),
    )


def fit(data: bytes, n: int) -> bytes:
    return (data * (n // max(len(data), 1) + 1))[:n] if data else bytes(n)


class BufferVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.capacity = 0
        self.slab = bytearray()
        self.buf = Buffer(0)
        self.model = bytearray()
        self.offset = 0
        self.length = 0

    @initialize(data=st.data())
    def make_buffer_in_middle_block(self, data: st.DataObject) -> None:
        cap = data.draw(st.integers(min_value=0, max_value=MAX_CAPACITY), label="capacity")
        initial = data.draw(st.binary(min_size=cap, max_size=cap), label="block")
        headroom = data.draw(st.integers(min_value=0, max_value=cap), label="headroom")
        self.capacity = cap
        self.slab = bytearray([LEFT_SENTINEL]) * cap + initial + bytearray([RIGHT_SENTINEL]) * cap
        self.buf = Buffer.over(memoryview(self.slab)[cap : 2 * cap])
        self.buf.reset(headroom)
        self.model = bytearray(initial)
        self.offset = headroom
        self.length = 0

    # -- model helpers ------------------------------------------------------------------------

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def tailroom(self) -> int:
        return self.capacity - self.end

    @property
    def contents(self) -> bytes:
        return bytes(self.model[self.offset : self.end])

    def expect(self, allowed: bool, operation: Callable[[], T]) -> T | None:
        """Run `operation`; it must succeed iff the model allows it, else raise BoundsError."""
        if allowed:
            return operation()
        with pytest.raises(BoundsError):
            operation()
        return None

    def model_append(self, data: bytes) -> None:
        self.model[self.end : self.end + len(data)] = data
        self.length += len(data)

    def model_prepend(self, data: bytes) -> None:
        self.offset -= len(data)
        self.model[self.offset : self.offset + len(data)] = data
        self.length += len(data)

    def model_consume(self, n: int) -> bytes:
        taken = self.contents[:n]
        self.offset += n
        self.length -= n
        return taken

    # -- append side --------------------------------------------------------------------------

    @rule(data=small_bytes)
    def append(self, data: bytes) -> None:
        ok = len(data) <= self.tailroom
        self.expect(ok, lambda: self.buf.append(data))
        if ok:
            self.model_append(data)

    @rule(size=st.sampled_from([1, 2, 4]), data=st.data())
    def append_int(self, size: int, data: st.DataObject) -> None:
        value = data.draw(field_values(256**size - 1), label="value")
        method = {1: self.buf.append_u8, 2: self.buf.append_u16, 4: self.buf.append_u32}[size]
        ok = size <= self.tailroom and 0 <= value < 256**size
        self.expect(ok, lambda: method(value))
        if ok:
            self.model_append(value.to_bytes(size, "big"))

    @rule(n=sizes, fill=small_bytes)
    def reserve_tail(self, n: int, fill: bytes) -> None:
        ok = 0 <= n <= self.tailroom
        view = self.expect(ok, lambda: self.buf.reserve_tail(n))
        if view is not None:
            assert bytes(view) == bytes(self.model[self.end : self.end + n])  # stale, unchanged
            written = fit(fill, n)
            view[:] = written
            self.model_append(written)

    @rule(n=st.integers(min_value=-MAX_CAPACITY - 2, max_value=MAX_CAPACITY + 2))
    def inc_len(self, n: int) -> None:
        ok = 0 <= self.length + n <= self.capacity - self.offset
        self.expect(ok, lambda: self.buf.inc_len(n))
        if ok:
            self.length += n

    @rule(n=sizes)
    def truncate(self, n: int) -> None:
        ok = 0 <= n <= self.length
        self.expect(ok, lambda: self.buf.truncate(n))
        if ok:
            self.length = n

    # -- prepend side -------------------------------------------------------------------------

    @rule(data=small_bytes)
    def prepend(self, data: bytes) -> None:
        ok = len(data) <= self.offset
        self.expect(ok, lambda: self.buf.prepend(data))
        if ok:
            self.model_prepend(data)

    @rule(size=st.sampled_from([1, 2, 4]), data=st.data())
    def prepend_int(self, size: int, data: st.DataObject) -> None:
        value = data.draw(field_values(256**size - 1), label="value")
        method = {1: self.buf.prepend_u8, 2: self.buf.prepend_u16, 4: self.buf.prepend_u32}[size]
        ok = size <= self.offset and 0 <= value < 256**size
        self.expect(ok, lambda: method(value))
        if ok:
            self.model_prepend(value.to_bytes(size, "big"))

    @rule(n=sizes, fill=small_bytes)
    def reserve_head(self, n: int, fill: bytes) -> None:
        ok = 0 <= n <= self.offset
        view = self.expect(ok, lambda: self.buf.reserve_head(n))
        if view is not None:
            written = fit(fill, n)
            view[:] = written
            self.model_prepend(written)

    # -- read side ----------------------------------------------------------------------------

    @rule(n=sizes)
    def read(self, n: int) -> None:
        ok = 0 <= n <= self.length
        view = self.expect(ok, lambda: self.buf.read(n))
        if view is not None:
            assert bytes(view) == self.model_consume(n)

    @rule(size=st.sampled_from([1, 2, 4]), consume=st.booleans())
    def read_or_peek_int(self, size: int, consume: bool) -> None:
        buf = self.buf
        readers = {1: buf.read_u8, 2: buf.read_u16, 4: buf.read_u32}
        peekers = {1: buf.peek_u8, 2: buf.peek_u16, 4: buf.peek_u32}
        method = (readers if consume else peekers)[size]
        ok = size <= self.length
        value = self.expect(ok, method)
        if ok:
            expected = self.contents[:size]
            assert value == int.from_bytes(expected, "big")
            if consume:
                self.model_consume(size)

    @rule(n=sizes)
    def advance(self, n: int) -> None:
        ok = 0 <= n <= self.length
        self.expect(ok, lambda: self.buf.advance(n))
        if ok:
            self.model_consume(n)

    @rule(headroom=sizes)
    def reset(self, headroom: int) -> None:
        ok = 0 <= headroom <= self.capacity
        self.expect(ok, lambda: self.buf.reset(headroom))
        if ok:
            self.offset, self.length = headroom, 0

    # -- sub-buffers and copies ---------------------------------------------------------------

    @rule(n=sizes, child_data=small_bytes, child_value=st.integers(0, 255))
    def sub(self, n: int, child_data: bytes, child_value: int) -> None:
        ok = 0 <= n <= self.tailroom
        child = self.expect(ok, lambda: self.buf.sub(n))
        if child is None:
            return
        start = self.end
        self.length += n
        assert (child.capacity, child.offset, len(child)) == (n, 0, 0)
        # The child may only write its own n bytes, never the parent's contents or beyond.
        with pytest.raises(BoundsError):
            child.prepend_u8(child_value)
        fits = len(child_data) <= n
        self.expect(fits, lambda: child.append(child_data))
        if fits:
            self.model[start : start + len(child_data)] = child_data
        with pytest.raises(BoundsError):
            child.append(bytes(child.tailroom + 1))

    @rule(data=small_bytes)
    def copy_from(self, data: bytes) -> None:
        other = Buffer(len(data) + 2)
        other.reset(1)
        other.append(data)
        ok = len(data) <= self.tailroom
        self.expect(ok, lambda: self.buf.copy_from(other))
        if ok:
            self.model_append(data)

    # -- string helpers -----------------------------------------------------------------------

    @rule(prefix=small_bytes, take_prefix_of_contents=st.booleans())
    def startswith_and_equals(self, prefix: bytes, take_prefix_of_contents: bool) -> None:
        if take_prefix_of_contents:
            prefix = self.contents[: len(prefix)]
        assert self.buf.startswith(prefix) == self.contents.startswith(prefix)
        assert self.buf.equals(prefix) == (self.contents == prefix)
        assert self.buf.equals(self.contents)

    @rule(text=st.text(max_size=10))
    def write_text(self, text: str) -> None:
        # The longest prefix of the text, in whole characters, whose UTF-8 fits the tailroom.
        keep = len(text)
        while len(text[:keep].encode()) > self.tailroom:
            keep -= 1
        expected = text[:keep].encode()
        assert self.buf.write_text("%s", text) == (keep == len(text))
        self.model_append(expected)

    @rule()
    def chomp(self) -> None:
        stripped = self.contents.rstrip(b"\r\n\x00")
        assert self.buf.chomp() == self.length - len(stripped)
        self.length = len(stripped)

    @rule(sep=st.sampled_from([",", " ", "\n"]))
    def parse_token(self, sep: str) -> None:
        contents = self.contents
        if not contents:
            assert self.buf.parse_token(sep) is None
            return
        cuts = [i for i in (contents.find(sep.encode()), contents.find(b"\x00")) if i >= 0]
        end = min(cuts, default=len(contents))
        try:
            expected = contents[:end].decode()
        except UnicodeDecodeError:
            with pytest.raises(UnicodeDecodeError):
                self.buf.parse_token(sep)
            return
        assert self.buf.parse_token(sep) == expected
        self.model_consume(min(end + 1, len(contents)))

    # -- the checks after every step ----------------------------------------------------------

    @invariant()
    def buffer_agrees_with_model(self) -> None:
        buf = self.buf
        assert buf.capacity == self.capacity
        assert (buf.offset, buf.headroom, len(buf)) == (self.offset, self.offset, self.length)
        assert buf.tailroom == self.tailroom
        assert bytes(buf.data) == self.contents
        cap = self.capacity
        assert self.slab[cap : 2 * cap] == self.model, "block bytes differ from the model"

    @invariant()
    def neighbours_untouched(self) -> None:
        cap = self.capacity
        assert self.slab[:cap] == bytes([LEFT_SENTINEL]) * cap, "left neighbour written"
        assert self.slab[2 * cap :] == bytes([RIGHT_SENTINEL]) * cap, "right neighbour written"


BufferVersusModel.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBufferVersusModel = BufferVersusModel.TestCase
