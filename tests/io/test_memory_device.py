"""MemoryDevice: the in-process packet device behind the demo and the tunnel's tests."""

from __future__ import annotations

import asyncio
import os
import select

import pytest

from core import Buffer, BufferPool, FrameBuilder
from tunnel.io.device import MemoryDevice, PacketDevice


def _readable(dev: MemoryDevice) -> bool:
    return bool(select.select([dev.fileno()], [], [], 0)[0])


def test_is_a_packet_device() -> None:
    with MemoryDevice() as dev:
        device: PacketDevice = dev  # mypy checks the protocol; this checks the attributes
        assert (device.rx_packets, device.tx_packets, device.tx_dropped) == (0, 0, 0)
        assert device.name == "mem0"


def test_packets_come_out_in_order_at_the_buffer_offset() -> None:
    frame = FrameBuilder(tun_mtu=1500).finalize()
    pool = BufferPool(frame, 2)
    with MemoryDevice() as dev:
        packets = [bytes([n]) * (20 + n) for n in range(5)]
        for pkt in packets:
            assert dev.inject(pkt)
        assert dev.pending == 5
        for pkt in packets:
            buf = pool.acquire()
            assert dev.read_into(buf)
            assert buf.offset == frame.headroom and buf.data == pkt
            pool.release(buf)
        buf = pool.acquire()
        assert not dev.read_into(buf)
        assert len(buf) == 0 and buf.offset == frame.headroom
        pool.release(buf)
        assert dev.rx_packets == 5 and dev.pending == 0


def test_fd_is_readable_exactly_while_packets_wait() -> None:
    with MemoryDevice() as dev:
        assert not _readable(dev)
        dev.inject(b"a" * 20)
        dev.inject(b"b" * 20)
        assert _readable(dev)
        buf = Buffer(100)
        assert dev.read_into(buf)
        assert _readable(dev)  # one still waits
        assert dev.read_into(buf)
        assert not _readable(dev)
        dev.inject(b"c" * 20)  # and again: the transition works repeatedly
        assert _readable(dev)


def test_injection_is_bounded() -> None:
    with MemoryDevice(capacity=2) as dev:
        assert dev.inject(b"1") and dev.inject(b"2")
        assert not dev.inject(b"3")
        assert dev.rx_dropped == 1 and dev.pending == 2
    with pytest.raises(ValueError, match="capacity"):
        MemoryDevice(capacity=0)


def test_packet_larger_than_the_tailroom_is_dropped_like_the_kernel_does() -> None:
    with MemoryDevice() as dev:
        dev.inject(b"x" * 101)
        dev.inject(b"y" * 100)
        buf = Buffer(100)
        assert dev.read_into(buf)  # the oversized one is skipped, the next one is read
        assert buf.data == b"y" * 100
        assert dev.rx_dropped == 1 and dev.rx_packets == 1
        assert not _readable(dev)


def test_writes_go_to_the_sink_which_may_refuse() -> None:
    seen: list[bytes] = []
    accept = True

    def sink(view: memoryview) -> bool:
        seen.append(bytes(view))  # the view is only valid during the call
        return accept

    with MemoryDevice(on_write=sink) as dev:
        assert dev.write(memoryview(b"one"))
        accept = False
        assert not dev.write(memoryview(b"two"))
        assert seen == [b"one", b"two"]
        assert (dev.tx_packets, dev.tx_dropped) == (1, 1)
    with MemoryDevice() as no_sink:
        assert no_sink.write(memoryview(b"discarded"))
        assert no_sink.tx_packets == 1


def test_close_is_idempotent_and_releases_the_fds() -> None:
    dev = MemoryDevice()
    fd = dev.fileno()
    dev.inject(b"z")
    dev.close()
    dev.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    assert dev.pending == 0


async def test_event_loop_wakes_for_injected_packets() -> None:
    loop = asyncio.get_running_loop()
    received: list[bytes] = []
    done = asyncio.Event()
    buf = Buffer(64)

    with MemoryDevice() as dev:
        def on_readable() -> None:  # what the tunnel's adapter does: drain a bounded batch
            for _ in range(8):
                buf.reset(0)
                if not dev.read_into(buf):
                    break
                received.append(bytes(buf.data))
            if len(received) == 3:
                done.set()

        loop.add_reader(dev.fileno(), on_readable)
        try:
            loop.call_later(0.01, dev.inject, b"first")
            loop.call_later(0.02, lambda: (dev.inject(b"second"), dev.inject(b"third")))
            await asyncio.wait_for(done.wait(), timeout=5)
        finally:
            loop.remove_reader(dev.fileno())
    assert received == [b"first", b"second", b"third"]
