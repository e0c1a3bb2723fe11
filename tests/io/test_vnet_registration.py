"""The TUN's virtio-net header is registered with the frame as device headroom (not sent)."""

from __future__ import annotations

import pytest

from core import BufferPool, FrameBuilder
from tunnel.io.offload import VNET_HDR_SIZE, check_device_headroom, register_vnet_header
from tunnel.runtime import make_frame


def test_the_tunnel_frame_registers_the_virtio_header() -> None:
    frame = make_frame()
    names = {reg.name: reg for reg in frame.registrations}
    assert names["virtio-net header"].device_headroom == VNET_HDR_SIZE
    assert frame.device_headroom == VNET_HDR_SIZE
    assert frame.headroom >= VNET_HDR_SIZE
    assert frame.overhead == 24  # AES-GCM P_DATA_V2 only: the header is not on the wire
    assert frame.link_mtu == 1524


def test_a_device_read_lands_its_header_in_registered_headroom() -> None:
    # The driver's TUN fast path: the header in front of the payload, at headroom - 10.
    pool = BufferPool(make_frame(), 1)
    buf = pool.acquire()
    payload_at = buf.offset
    buf.reset(payload_at - VNET_HDR_SIZE)
    assert buf.offset >= 0
    pool.release(buf)


def test_the_driver_refuses_a_frame_without_the_header_registered() -> None:
    builder = FrameBuilder()
    builder.reserve("tiny", headroom=0)
    with pytest.raises(ValueError, match="virtio-net"):
        check_device_headroom(builder.finalize(), VNET_HDR_SIZE)
    builder = FrameBuilder()
    register_vnet_header(builder)
    check_device_headroom(builder.finalize(), VNET_HDR_SIZE)
