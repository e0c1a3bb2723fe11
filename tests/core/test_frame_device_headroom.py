"""Device headroom: bytes in front of a packet that a local device reads (the TUN's virtio-net
header) and that are never sent. They size the buffers but not the overhead or the link MTU."""

from __future__ import annotations

import pytest

from core import BufferPool, FrameBuilder, FrameError


def _builder(device: int = 0, wire: int = 24) -> FrameBuilder:
    builder = FrameBuilder(tun_mtu=1500)
    builder.reserve("wire", headroom=wire, tailroom=16)
    if device:
        builder.reserve("virtio-net header", device_headroom=device)
    return builder


def test_device_headroom_is_not_sent() -> None:
    plain, tun = _builder().finalize(), _builder(device=10).finalize()
    assert tun.device_headroom == 10
    assert (tun.overhead, tun.link_mtu) == (plain.overhead, plain.link_mtu) == (24, 1524)
    # It shares the room in front of the payload with the wire headers (consumed first).
    assert tun.headroom == plain.headroom == 24
    assert tun.registrations[1].device_headroom == 10
    assert "device_headroom=10" in tun.describe()


def test_device_headroom_larger_than_the_wire_headers_sizes_the_buffers() -> None:
    frame = _builder(device=40, wire=8).finalize()
    assert frame.headroom == 40
    assert frame.overhead == 8
    assert frame.buffer_size == 1600  # 40 + 1500 + 16, rounded up to 64
    buf = BufferPool(frame, 1).acquire()
    assert buf.headroom >= 40
    buf.reserve_head(40)  # the device's bytes fit in front of the payload


def test_negative_device_headroom_is_refused() -> None:
    with pytest.raises(FrameError, match="negative"):
        FrameBuilder().reserve("x", device_headroom=-1)
