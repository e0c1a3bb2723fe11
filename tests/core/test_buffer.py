"""Unit tests of core.Buffer: each operation's effect, and that each failure changes nothing.

Buffers here wrap a bytearray the test holds (`Buffer.over`), so a test can compare the whole
block, not only the window, before and after an operation.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core import BoundsError, Buffer

BLOCK_FILL = 0xEE


def make(capacity: int = 16, headroom: int = 0, content: bytes = b"") -> tuple[Buffer, bytearray]:
    block = bytearray([BLOCK_FILL]) * capacity
    buf = Buffer.over(block)
    buf.reset(headroom)
    buf.append(content)
    return buf, block


def state(buf: Buffer, block: bytearray) -> tuple[int, int, bytes]:
    return buf.offset, len(buf), bytes(block)


# -- construction and geometry -------------------------------------------------------------


def test_owned_buffer_starts_empty_at_offset_zero() -> None:
    buf = Buffer(32)
    assert (buf.capacity, buf.offset, buf.headroom, len(buf), buf.tailroom) == (32, 0, 0, 0, 32)
    assert bytes(buf.data) == b""


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(BoundsError):
        Buffer(-1)


def test_over_writes_into_the_given_block() -> None:
    block = bytearray(8)
    buf = Buffer.over(block)
    buf.append(b"abc")
    assert block[:3] == b"abc"
    assert buf.capacity == 8


def test_over_keeps_working_after_the_callers_view_is_released() -> None:
    block = bytearray(8)
    view = memoryview(block)
    buf = Buffer.over(view)
    view.release()
    buf.append(b"ok")
    assert block[:2] == b"ok"


def test_over_refuses_read_only_and_strided_blocks() -> None:
    with pytest.raises(ValueError, match="writable"):
        Buffer.over(memoryview(b"abcd"))
    with pytest.raises(ValueError, match="contiguous"):
        Buffer.over(memoryview(bytearray(8))[::2])


def test_over_a_wide_format_view_counts_bytes() -> None:
    words = memoryview(bytearray(16)).cast("I")
    assert Buffer.over(words).capacity == 16


def test_reset_arms_headroom_and_empties() -> None:
    buf, _ = make(16, 2, b"xyz")
    buf.reset(10)
    assert (buf.offset, buf.headroom, len(buf), buf.tailroom) == (10, 10, 0, 6)


@pytest.mark.parametrize("headroom", [-1, 17])
def test_reset_out_of_block_changes_nothing(headroom: int) -> None:
    buf, block = make(16, 3, b"ab")
    before = state(buf, block)
    with pytest.raises(BoundsError):
        buf.reset(headroom)
    assert state(buf, block) == before


def test_data_is_a_zero_copy_view_of_the_contents() -> None:
    buf, block = make(8, 2, b"abcd")
    view = buf.data
    assert isinstance(view, memoryview)
    view[0] = ord("X")
    assert block[2] == ord("X")
    assert bytes(buf.data) == b"Xbcd"


# -- append side -----------------------------------------------------------------------------


def test_append_side_writes_network_order() -> None:
    buf, _ = make(16)
    buf.append(b"\xaa")
    buf.append_u8(0x01)
    buf.append_u16(0x0203)
    buf.append_u32(0x04050607)
    assert bytes(buf.data) == b"\xaa\x01\x02\x03\x04\x05\x06\x07"
    assert buf.tailroom == 8


def test_append_accepts_bytearray_and_memoryview() -> None:
    buf, _ = make(8)
    buf.append(bytearray(b"ab"))
    buf.append(memoryview(b"cd"))
    assert bytes(buf.data) == b"abcd"


def test_reserve_tail_claims_writable_bytes_in_the_block() -> None:
    buf, block = make(8, 1, b"a")
    view = buf.reserve_tail(3)
    assert len(view) == 3 and len(buf) == 4
    view[:] = b"xyz"
    assert block[1:5] == b"axyz"


def test_inc_len_grows_and_shrinks_within_the_block() -> None:
    buf, _ = make(8, 2, b"ab")
    buf.inc_len(3)
    assert len(buf) == 5
    buf.inc_len(-4)
    assert len(buf) == 1


def test_tailroom_view_then_inc_len_is_the_recv_into_pattern() -> None:
    buf, block = make(8, 2, b"h")
    spare = buf.tailroom_view()
    assert len(spare) == 5 and len(buf) == 1  # the view claims nothing
    spare[:3] = b"pay"  # as recv_into would
    buf.inc_len(3)
    assert bytes(buf.data) == b"hpay"
    assert block[2:6] == b"hpay"


def test_truncate_keeps_the_first_n_bytes() -> None:
    buf, _ = make(8, 0, b"abcdef")
    buf.truncate(2)
    assert bytes(buf.data) == b"ab"
    buf.truncate(0)
    assert len(buf) == 0


# -- prepend side ----------------------------------------------------------------------------


def test_prepend_side_writes_network_order_in_front() -> None:
    buf, _ = make(16, 10, b"P")
    buf.prepend_u32(0x04050607)
    buf.prepend_u16(0x0203)
    buf.prepend_u8(0x01)
    buf.prepend(b"\xaa\xbb")
    assert bytes(buf.data) == b"\xaa\xbb\x01\x02\x03\x04\x05\x06\x07P"
    assert buf.offset == 1


def test_reserve_head_claims_writable_bytes_in_front() -> None:
    buf, block = make(8, 4, b"z")
    view = buf.reserve_head(3)
    view[:] = b"abc"
    assert (buf.offset, len(buf)) == (1, 4)
    assert block[1:5] == b"abcz"


def test_prepend_u32_near_the_start_does_not_wrap_to_the_blocks_end() -> None:
    # struct.pack_into(view, -2, ...) would write the block's last bytes: the check must stop it.
    buf, block = make(16, 2, b"ab")
    before = state(buf, block)
    with pytest.raises(BoundsError):
        buf.prepend_u32(0xFFFFFFFF)
    assert state(buf, block) == before


# -- read side -------------------------------------------------------------------------------


def test_reads_consume_from_the_front_in_network_order() -> None:
    buf, _ = make(16, 0, b"\x01\x02\x03\x04\x05\x06\x07abc")
    assert buf.peek_u8() == 0x01
    assert buf.read_u8() == 0x01
    assert buf.peek_u16() == 0x0203
    assert buf.read_u16() == 0x0203
    assert buf.peek_u32() == 0x04050607
    assert buf.read_u32() == 0x04050607
    view = buf.read(2)
    assert isinstance(view, memoryview) and bytes(view) == b"ab"
    assert (buf.offset, len(buf), bytes(buf.data)) == (9, 1, b"c")


def test_peek_does_not_consume() -> None:
    buf, _ = make(8, 0, b"\x00\x01\x02\x03")
    for _ in range(2):
        assert (buf.peek_u8(), buf.peek_u16(), buf.peek_u32()) == (0, 1, 0x00010203)
    assert len(buf) == 4


def test_advance_drops_from_the_front() -> None:
    buf, _ = make(8, 1, b"abcd")
    buf.advance(3)
    assert (buf.offset, bytes(buf.data)) == (4, b"d")


def test_read_view_aliases_the_block() -> None:
    buf, block = make(8, 0, b"abcd")
    view = buf.read(2)
    block[0] = ord("Z")
    assert bytes(view) == b"Zb"


# -- failures leave everything unchanged ------------------------------------------------------

Op = Callable[[Buffer], object]


def _full(n: int) -> Buffer:
    other = Buffer(n)
    other.inc_len(n)
    return other


def _noop(buf: Buffer) -> None:
    pass


# Each case runs against a 16-byte buffer with headroom 3 and contents b"abcde" (tailroom 8):
# (legal setup that brings the buffer to the edge, the operation that must fail).
FAILING_OPS: dict[str, tuple[Op, Op]] = {
    "append too long": (_noop, lambda b: b.append(b"x" * 9)),
    "append_u8 out of room": (lambda b: b.inc_len(8), lambda b: b.append_u8(1)),
    "append_u16 out of room": (lambda b: b.inc_len(7), lambda b: b.append_u16(1)),
    "append_u32 out of room": (lambda b: b.inc_len(5), lambda b: b.append_u32(1)),
    "append_u8 value 256": (_noop, lambda b: b.append_u8(256)),
    "append_u8 value -1": (_noop, lambda b: b.append_u8(-1)),
    "append_u16 value 65536": (_noop, lambda b: b.append_u16(65536)),
    "append_u32 value 2**32": (_noop, lambda b: b.append_u32(2**32)),
    "append_u32 value -1": (_noop, lambda b: b.append_u32(-1)),
    "reserve_tail too long": (_noop, lambda b: b.reserve_tail(9)),
    "reserve_tail negative": (_noop, lambda b: b.reserve_tail(-1)),
    "inc_len past the end": (_noop, lambda b: b.inc_len(9)),
    "inc_len below zero": (_noop, lambda b: b.inc_len(-6)),
    "truncate longer": (_noop, lambda b: b.truncate(6)),
    "truncate negative": (_noop, lambda b: b.truncate(-1)),
    "prepend too long": (_noop, lambda b: b.prepend(b"xxxx")),
    "prepend_u8 out of room": (lambda b: b.reset(0), lambda b: b.prepend_u8(1)),
    "prepend_u8 value 256": (_noop, lambda b: b.prepend_u8(256)),
    "prepend_u16 out of room": (lambda b: b.reset(1), lambda b: b.prepend_u16(1)),
    "prepend_u16 value -1": (_noop, lambda b: b.prepend_u16(-1)),
    "prepend_u16 value 65536": (_noop, lambda b: b.prepend_u16(65536)),
    "prepend_u32 out of room": (_noop, lambda b: b.prepend_u32(1)),
    "prepend_u32 value 2**32": (lambda b: b.reset(8), lambda b: b.prepend_u32(2**32)),
    "reserve_head too long": (_noop, lambda b: b.reserve_head(4)),
    "reserve_head negative": (_noop, lambda b: b.reserve_head(-1)),
    "read too long": (_noop, lambda b: b.read(6)),
    "read negative": (_noop, lambda b: b.read(-1)),
    "read_u8 empty": (lambda b: b.truncate(0), lambda b: b.read_u8()),
    "read_u16 too short": (lambda b: b.truncate(1), lambda b: b.read_u16()),
    "read_u32 too short": (lambda b: b.truncate(3), lambda b: b.read_u32()),
    "peek_u8 empty": (lambda b: b.truncate(0), lambda b: b.peek_u8()),
    "peek_u16 too short": (lambda b: b.truncate(1), lambda b: b.peek_u16()),
    "peek_u32 too short": (lambda b: b.truncate(3), lambda b: b.peek_u32()),
    "advance too long": (_noop, lambda b: b.advance(6)),
    "advance negative": (_noop, lambda b: b.advance(-1)),
    "sub too long": (_noop, lambda b: b.sub(9)),
    "sub negative": (_noop, lambda b: b.sub(-1)),
    "copy_from too long": (_noop, lambda b: b.copy_from(_full(9))),
}


@pytest.mark.parametrize("name", list(FAILING_OPS))
def test_failed_operation_raises_bounds_error_and_changes_nothing(name: str) -> None:
    setup, failing = FAILING_OPS[name]
    buf, block = make(16, 3, b"abcde")
    setup(buf)
    before = state(buf, block)
    with pytest.raises(BoundsError):
        failing(buf)
    assert state(buf, block) == before


def test_bounds_error_is_a_value_error() -> None:
    assert issubclass(BoundsError, ValueError)


def test_append_of_a_non_byte_view_raises_and_writes_nothing() -> None:
    buf, block = make(16, 3, b"abcde")
    before = state(buf, block)
    with pytest.raises(ValueError):
        buf.append(memoryview(bytearray(4)).cast("I"))  # len() is 1 item, nbytes is 4
    assert state(buf, block) == before


@pytest.mark.parametrize(
    "op", ["append_u8", "append_u16", "append_u32", "prepend_u8", "prepend_u16", "prepend_u32"]
)
def test_non_int_value_is_a_type_error_and_keeps_the_contents(op: str) -> None:
    buf, _ = make(16, 8, b"abcd")
    with pytest.raises(TypeError):
        getattr(buf, op)(1.5)
    assert (buf.offset, len(buf), bytes(buf.data)) == (8, 4, b"abcd")


# -- sub-buffers and copies -------------------------------------------------------------------


def test_sub_claims_tailroom_and_the_child_writes_in_place() -> None:
    parent, block = make(16, 2, b"hd")
    child = parent.sub(5)
    assert (len(parent), parent.tailroom) == (7, 7)
    assert (child.capacity, child.offset, len(child)) == (5, 0, 0)
    child.append(b"12345")
    assert bytes(parent.data) == b"hd12345"
    assert block[2:9] == b"hd12345"


def test_sub_child_cannot_reach_past_its_bytes() -> None:
    parent, block = make(16, 0, b"")
    child = parent.sub(4)
    child.append(b"abcd")
    before = bytes(block)
    with pytest.raises(BoundsError):
        child.append_u8(1)
    child.reset(0)
    with pytest.raises(BoundsError):
        child.prepend_u8(1)
    assert bytes(block) == before


def test_copy_from_appends_the_other_buffers_contents() -> None:
    buf, _ = make(16, 0, b"ab")
    other, _ = make(8, 3, b"cde")
    buf.copy_from(other)
    assert bytes(buf.data) == b"abcde"
    assert bytes(other.data) == b"cde"  # the source is not consumed


def test_copy_from_itself_doubles_the_contents() -> None:
    buf, _ = make(8, 1, b"xyz")
    buf.copy_from(buf)
    assert bytes(buf.data) == b"xyzxyz"


# -- string helpers --------------------------------------------------------------------------


def test_startswith_and_equals_compare_the_contents_only() -> None:
    buf, _ = make(16, 2, b"PUSH_REPLY")
    assert buf.startswith(b"PUSH_")
    assert buf.startswith(b"")
    assert not buf.startswith(b"PUSH_REQUEST")
    assert not buf.startswith(b"PUSH_REPLY,")  # longer than the contents
    assert buf.equals(b"PUSH_REPLY")
    assert not buf.equals(b"PUSH_REPL")
    assert not buf.equals(b"PUSH_REPLY\x00")
    other, _ = make(12, 0, b"PUSH_REPLY")
    assert buf.equals(other)


def test_write_text_formats_printf_style() -> None:
    buf, _ = make(32)
    assert buf.write_text("peer-id %d,cipher %s", 7, "AES-256-GCM") is True
    assert bytes(buf.data) == b"peer-id 7,cipher AES-256-GCM"
    assert buf.write_text("100%") is True  # no args: no formatting, a lone % is fine


def test_write_text_truncates_to_the_tailroom_and_says_so() -> None:
    buf, block = make(8, 2, b"")
    assert buf.write_text("%s", "abcdefghij") is False
    assert bytes(buf.data) == b"abcdef"
    assert buf.tailroom == 0
    assert block[:2] == bytes([BLOCK_FILL, BLOCK_FILL])


def test_write_text_never_splits_a_utf8_character() -> None:
    exact, _ = make(4)
    assert exact.write_text("abé") is True  # b"ab\xc3\xa9": 4 bytes, fits
    short, _ = make(3)
    assert short.write_text("abé") is False
    assert bytes(short.data) == b"ab"  # not b"ab\xc3"


def test_chomp_strips_trailing_cr_lf_nul() -> None:
    buf, _ = make(16, 0, b"line\r\n\x00\n")
    assert buf.chomp() == 4
    assert bytes(buf.data) == b"line"
    assert buf.chomp() == 0
    empty, _ = make(4, 0, b"\r\n")
    assert empty.chomp() == 2 and len(empty) == 0


def test_parse_token_walks_comma_separated_options() -> None:
    buf, _ = make(64, 0, b"route 10.0.0.0,ping 10,,topology subnet")
    tokens = []
    while (token := buf.parse_token(",")) is not None:
        tokens.append(token)
    assert tokens == ["route 10.0.0.0", "ping 10", "", "topology subnet"]
    assert len(buf) == 0


def test_parse_token_stops_at_nul_and_consumes_it() -> None:
    buf, _ = make(16, 0, b"ab\x00cd,ef")
    assert buf.parse_token(",") == "ab"
    assert bytes(buf.data) == b"cd,ef"


def test_parse_token_with_invalid_utf8_consumes_nothing() -> None:
    buf, block = make(16, 0, b"\xff\xfe,x")
    before = state(buf, block)
    with pytest.raises(UnicodeDecodeError):
        buf.parse_token(",")
    assert state(buf, block) == before
