"""Tests of core.Frame / FrameBuilder: derived geometry, limits."""

from __future__ import annotations

import dataclasses

import pytest

from core import BufferPool, Frame, FrameBuilder, FrameError
from core.frame import BLOCK_ALIGN, HEADROOM_ALIGN, MIN_TUN_MTU, Registration


def aead_frame(tun_mtu: int = 1500, link_mtu: int | None = None) -> Frame:
    """The OpenVPN 2.6 AEAD data channel: P_DATA_V2 header, packet-id, tag in front."""
    builder = FrameBuilder(tun_mtu=tun_mtu, link_mtu=link_mtu)
    builder.reserve("p_data_v2", headroom=4)
    builder.reserve("packet_id", headroom=4)
    builder.reserve("aead_tag", headroom=16, tailroom=16)
    return builder.finalize()


def test_geometry_is_derived_from_the_registrations() -> None:
    frame = aead_frame()
    assert frame.tun_mtu == 1500
    assert frame.overhead == 24
    assert frame.link_mtu == 1524
    assert frame.headroom == 24
    assert frame.tailroom == 16
    assert frame.payload_size == 1500
    assert frame.buffer_size == 1600  # 24 + 1500 + 16 = 1540, up to a multiple of 64
    assert [r.name for r in frame.registrations] == ["p_data_v2", "packet_id", "aead_tag"]
    assert frame.registrations[2] == Registration("aead_tag", 16, 16, 0)


def test_headroom_is_aligned_but_overhead_stays_exact() -> None:
    builder = FrameBuilder(tun_mtu=1400)
    builder.reserve("odd", headroom=5)
    builder.reserve("pad", expansion=16)
    frame = builder.finalize()
    assert frame.headroom == 8
    assert frame.headroom % HEADROOM_ALIGN == 0
    assert frame.overhead == 21  # 5 header bytes + 16 of expansion, unrounded
    assert frame.link_mtu == 1421
    assert frame.payload_size == 1416
    assert frame.buffer_size % BLOCK_ALIGN == 0
    assert frame.buffer_size >= frame.headroom + frame.payload_size + frame.tailroom


def test_empty_builder_gives_the_bare_tun_mtu() -> None:
    frame = FrameBuilder(tun_mtu=1500).finalize()
    assert (frame.headroom, frame.tailroom, frame.overhead, frame.link_mtu) == (0, 0, 0, 1500)
    assert frame.registrations == ()


def test_frame_is_immutable() -> None:
    frame = aead_frame()
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.tun_mtu = 9000  # type: ignore[misc]


def test_describe_names_every_registration() -> None:
    text = aead_frame().describe()
    assert "link_mtu=1524" in text
    for name in ("p_data_v2", "packet_id", "aead_tag"):
        assert name in text


def test_a_name_registers_once() -> None:
    builder = FrameBuilder()
    builder.reserve("aead", headroom=16)
    with pytest.raises(FrameError, match="aead"):
        builder.reserve("aead", headroom=16)


@pytest.mark.parametrize("field", ["headroom", "tailroom", "expansion"])
def test_negative_geometry_is_refused(field: str) -> None:
    with pytest.raises(FrameError):
        FrameBuilder().reserve("bad", **{field: -1})


@pytest.mark.parametrize("tun_mtu", [MIN_TUN_MTU - 1, 0, 65536])
def test_tun_mtu_outside_the_carriable_range_is_refused(tun_mtu: int) -> None:
    with pytest.raises(FrameError):
        FrameBuilder(tun_mtu=tun_mtu)


def test_minimum_tun_mtu_is_accepted() -> None:
    assert aead_frame(tun_mtu=MIN_TUN_MTU).tun_mtu == MIN_TUN_MTU


def test_link_mtu_cap_lowers_the_tun_mtu_to_fit() -> None:
    frame = aead_frame(tun_mtu=1500, link_mtu=1400)
    assert frame.link_mtu == 1400
    assert frame.tun_mtu == 1376
    assert frame.link_mtu_limit == 1400


def test_link_mtu_cap_above_need_changes_nothing() -> None:
    assert aead_frame(tun_mtu=1400, link_mtu=1500).tun_mtu == 1400


def test_link_mtu_that_cannot_carry_the_overhead_is_a_clear_error() -> None:
    with pytest.raises(FrameError, match=r"overhead.*needs link_mtu >= 600"):
        aead_frame(link_mtu=599)
    assert aead_frame(link_mtu=600).tun_mtu == MIN_TUN_MTU


def test_link_mtu_beyond_udp_is_refused() -> None:
    with pytest.raises(FrameError, match="UDP"):
        aead_frame(tun_mtu=65535)


def test_frame_error_is_a_value_error() -> None:
    assert issubclass(FrameError, ValueError)


# -- a frame's buffers really hold its packets ----------------------------------------------


def test_pool_buffers_carry_a_full_packet_with_every_registered_header() -> None:
    frame = aead_frame()
    pool = BufferPool(frame, count=1)
    buf = pool.acquire()
    buf.append(bytes(frame.tun_mtu))  # a TUN read of tun_mtu bytes lands at the headroom
    buf.reserve_tail(frame.tailroom)  # the AEAD's working space
    buf.truncate(frame.tun_mtu)
    for reg in reversed(frame.registrations):
        buf.reserve_head(reg.headroom)
    assert len(buf) == frame.link_mtu
    # and a datagram of link_mtu bytes read from the socket fits from offset 0
    buf.reset(0)
    buf.reserve_tail(frame.link_mtu)
