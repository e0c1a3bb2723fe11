"""The TUN device and its netlink configuration against the real kernel, in test namespaces.

Every test runs inside namespaces created by tests/netns.py and is bounded in time and in
packets; nothing is configured in the host's namespace.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from core import Buffer, BufferPool, FrameBuilder
from tests.netns import NetnsPair, wait_for
from tunnel.io import tun
from tunnel.io.device import DeviceError
from tunnel.io.netlink import (
    add_routes,
    configure_device,
    link_exists,
    remove_device,
    set_link_up,
)
from tunnel.io.tun import TunDevice

root = pytest.mark.root


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _link(pair: NetnsPair, ns: str, name: str) -> dict[str, object]:
    out = pair.run(ns, "ip", "-j", "addr", "show", "dev", name, check=True).stdout
    info: dict[str, object] = json.loads(out)[0]
    return info


def _start_responder(
    pair: NetnsPair, *, addresses: list[str], routes: Sequence[str] = (), max_replies: int,
) -> tuple[subprocess.Popen[bytes], str]:
    ready = pair.workdir / "responder.ready"
    argv = [*pair.python_argv(), "-m", "tests.e2e.tun_responder", "--name", pair.ifname("t"),
            "--ready", str(ready), "--max-replies", str(max_replies), "--seconds", "20"]
    for address in addresses:
        argv += ["--address", address]
    for route in routes:
        argv += ["--route", route]
    proc = pair.spawn(pair.ns_a, *argv, log_path=pair.workdir / "responder.log")
    assert wait_for(lambda: ready.exists() or proc.poll() is not None, 15), "responder hangs"
    assert ready.exists(), f"responder failed:\n{pair.log(proc)}"
    return proc, ready.read_text()


def _finish(pair: NetnsPair, proc: subprocess.Popen[bytes]) -> str:
    """Wait for the responder to exit by itself; its summary line."""
    assert proc.wait(15) == 0, pair.log(proc)
    return pair.log(proc).strip().splitlines()[-1]


# -- ping through a TUN device answered by Python ------------------------------------------


@root
@pytest.mark.ping
def test_ping_ipv4_through_tun_and_a_route(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    net = pair.new_subnet()
    routed = pair.new_subnet()
    proc, name = _start_responder(
        pair,
        addresses=[f"{net[1]}/24"],
        routes=[f"{routed},{net[2]}"],  # via a gateway on the device's own subnet
        max_replies=6,
    )
    info = _link(pair, pair.ns_a, name)
    assert info["mtu"] == 1500
    assert "UP" in info["flags"]  # type: ignore[operator]

    assert pair.ping(pair.ns_a, net[2], count=3)
    assert pair.ping(pair.ns_a, routed[9], count=3)

    summary = _finish(pair, proc)
    assert summary.startswith("replies=6 v4=6 v6=0 "), summary
    assert "tx_dropped=0 in_use=0" in summary, summary


@root
@pytest.mark.ping
def test_ping_ipv6_through_tun(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    net6 = pair.new_subnet6()
    routed6 = pair.new_subnet6()
    proc, _ = _start_responder(
        pair,
        addresses=[f"{pair.new_subnet()[1]}/24", f"{net6[1]}/64"],
        routes=[str(routed6)],  # a device route, no gateway
        max_replies=6,
    )
    assert pair.ping(pair.ns_a, net6[2], count=3)
    assert pair.ping(pair.ns_a, routed6[5], count=3)
    summary = _finish(pair, proc)
    assert summary.startswith("replies=6 v4=0 v6=6 "), summary


# -- the device in-process (this thread entered into the test namespace) --------------------


@root
def test_read_into_lands_ipv6_packet_at_frame_headroom(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    net6 = pair.new_subnet6()
    frame = FrameBuilder(tun_mtu=1400).finalize()
    pool = BufferPool(frame, 4)
    payload = os.urandom(600)
    with pair.entered(pair.ns_a), TunDevice.open(pair.ifname("t")) as dev:
        configure_device(dev.name, mtu=1400, addresses=[ipaddress.IPv6Interface(f"{net6[1]}/64")])
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.sendto(payload, (str(net6[2]), 9))
        buf = pool.acquire()
        found = None
        # The kernel may also send its own IPv6 packets (MLD, router solicitation): skip them.
        for _ in range(20):
            if not select.select([dev], [], [], 2)[0]:
                break
            buf.reset(frame.headroom)
            assert dev.read_into(buf)
            pkt = buf.data
            if pkt[0] >> 4 == 6 and pkt[6] == socket.IPPROTO_UDP:
                found = bytes(pkt)
                break
        assert found is not None, "no UDP/IPv6 packet came out of the TUN device"
        assert buf.offset == frame.headroom
        assert ipaddress.IPv6Address(found[24:40]) == net6[2]
        assert found[48:] == payload  # after the IPv6 (40) and UDP (8) headers
        pool.release(buf)
        assert pool.stats.in_use == 0


@root
def test_oversized_packet_is_dropped_and_garbage_write_refused(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    net = pair.new_subnet()
    with pair.entered(pair.ns_a), TunDevice.open(pair.ifname("t")) as dev:
        # No IPv6 here: the kernel's own MLD/RS packets would interleave with the datagrams.
        Path(f"/proc/sys/net/ipv6/conf/{dev.name}/disable_ipv6").write_text("1")
        configure_device(dev.name, mtu=1500, addresses=[ipaddress.IPv4Interface(f"{net[1]}/24")])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"x" * 1000, (str(net[2]), 9))
            sock.sendto(b"y" * 10, (str(net[2]), 9))
        small = Buffer(200)  # room for the small datagram only
        assert wait_for(lambda: select.select([dev], [], [], 0)[0], 2)
        assert dev.read_into(small)
        assert len(small) == 20 + 8 + 10 and bytes(small.data[-10:]) == b"y" * 10
        assert dev.rx_dropped == 1 and dev.rx_packets == 1
        assert not dev.read_into(small)  # drained: False, nothing appended
        assert len(small) == 38

        assert not dev.write(memoryview(b"\x00" * 40))  # neither IPv4 nor IPv6
        assert dev.tx_dropped == 1
        set_link_up(dev.name, False)
        assert not dev.write(small.data)  # link down: dropped, the device stays usable
        assert dev.tx_dropped == 2 and dev.tx_packets == 0


@root
def test_device_disappears_after_close(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    with pair.entered(pair.ns_a):
        dev = TunDevice.open(pair.ifname("t"))
        assert link_exists(dev.name)
        dev.close()
        dev.close()  # idempotent
        assert dev.closed
        assert not link_exists(dev.name)

        persistent = TunDevice.open(pair.ifname("p%d"))
        assert persistent.name == pair.ifname("p0")  # the kernel's name is read back
        persistent.set_persist(True)
        persistent.close()
        assert link_exists(persistent.name)
        remove_device(persistent.name)
        assert not link_exists(persistent.name)
        remove_device(persistent.name)  # "no such device" is not an error


@root
def test_open_errors_are_clear(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    with pair.entered(pair.ns_a):
        with TunDevice.open(pair.ifname("t")) as dev:
            with pytest.raises(DeviceError, match="busy: another process has it open") as busy:
                TunDevice.open(dev.name)
            assert busy.value.errno == errno.EBUSY
        with pytest.raises(DeviceError, match="an interface of another type") as other:
            TunDevice.open(pair.veth_a)
        assert other.value.errno == errno.EINVAL

        name = pair.ifname("q")
        with TunDevice.open(name, multi_queue=True) as q0, \
                TunDevice.open(name, multi_queue=True) as q1:
            assert q0.name == q1.name == name and q0.fileno() != q1.fileno()


@root
def test_open_as_non_root_fails_with_clear_error(netns_pair: NetnsPair) -> None:
    # A forked child drops to nobody (which also drops every capability) and tries; the
    # code under test is already imported, so the child needs no file access.
    with netns_pair.entered(netns_pair.ns_a):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report through the pipe, never return into pytest
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                outcome: dict[str, object] = {"error": None}
                try:
                    TunDevice.open("ttnobody%d")
                except OSError as exc:
                    outcome = {"error": type(exc).__name__, "errno": exc.errno, "text": str(exc)}
                os.write(write_end, json.dumps(outcome).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            report: dict[str, Any] = json.loads(reader.read() or b"{}")
        os.waitpid(pid, 0)
    assert report["error"] == "DeviceError", report
    # EACCES where /dev/net/tun is not world-writable, else EPERM from TUNSETIFF.
    assert report["errno"] in (errno.EPERM, errno.EACCES)
    assert "need root or CAP_NET_ADMIN" in report["text"]


@root
@pytest.mark.setpriv
def test_open_without_cap_net_admin_fails_with_clear_error(netns_pair: NetnsPair) -> None:
    # Still root (so /dev/net/tun opens) but without CAP_NET_ADMIN: TUNSETIFF says EPERM.
    script = (
        "import json\n"
        "from tunnel.io.tun import TunDevice\n"
        "try:\n"
        "    TunDevice.open('ttnocap%d')\n"
        "    print(json.dumps({'error': None}))\n"
        "except OSError as exc:\n"
        "    print(json.dumps({'error': type(exc).__name__, 'errno': exc.errno,"
        " 'text': str(exc)}))\n"
    )
    result = netns_pair.run(
        netns_pair.ns_a, "setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
        *netns_pair.python_argv(), "-c", script, check=True,
    )
    report = json.loads(result.stdout)
    assert report["error"] == "DeviceError", report
    assert report["errno"] == errno.EPERM
    assert "cannot create TUN device 'ttnocap%d': need root or CAP_NET_ADMIN" in report["text"]


def test_missing_tun_node_and_bad_names_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tun, "TUN_PATH", "/nonexistent/net/tun")
    with pytest.raises(DeviceError, match="load the tun module") as missing:
        TunDevice.open()
    assert missing.value.errno == errno.ENOENT
    for bad in ("", "x" * 16, "a/b", "tun 0", "tün0"):
        with pytest.raises(DeviceError, match="invalid TUN device name"):
            TunDevice.open(bad)


# -- netlink configuration ---------------------------------------------------------------------


@root
def test_configure_device_is_idempotent_and_enables_ipv6(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    net = pair.new_subnet()
    net6 = pair.new_subnet6()
    addresses = [ipaddress.ip_interface(f"{net[1]}/24"), ipaddress.ip_interface(f"{net6[1]}/64")]
    with pair.entered(pair.ns_a), TunDevice.open(pair.ifname("t")) as dev:
        # As if the namespace handed new devices disable_ipv6=1.
        Path(f"/proc/sys/net/ipv6/conf/{dev.name}/disable_ipv6").write_text("1")
        configure_device(dev.name, mtu=1420, addresses=addresses)
        configure_device(dev.name, mtu=1420, addresses=addresses)  # again: no EEXIST
        info = _link(pair, pair.ns_a, dev.name)
        assert info["mtu"] == 1420 and "UP" in info["flags"]  # type: ignore[operator]
        configured = {
            f"{a['local']}/{a['prefixlen']}"
            for a in info["addr_info"]  # type: ignore[attr-defined]
            if a.get("scope") == "global"
        }
        assert configured == {str(a) for a in addresses}

        set_link_up(dev.name, False)
        assert "UP" not in _link(pair, pair.ns_a, dev.name)["flags"]  # type: ignore[operator]

        with pytest.raises(DeviceError, match="IPv6 needs an MTU of at least 1280"):
            configure_device(dev.name, mtu=1200, addresses=addresses)
        with pytest.raises(DeviceError, match="not on a network of this device") as unreachable:
            add_routes(dev.name, [(pair.new_subnet(), pair.new_subnet()[1])])
        assert unreachable.value.errno == errno.ENETUNREACH
        with pytest.raises(DeviceError, match="gateway is not IPv4"):
            add_routes(dev.name, [(pair.new_subnet(), net6[2])])
    with pair.entered(pair.ns_a), pytest.raises(DeviceError, match="no network device") as nodev:
        configure_device(pair.ifname("none"), mtu=1500)
    assert nodev.value.errno == errno.ENODEV


# -- the harness itself ------------------------------------------------------------------------


@root
@pytest.mark.ip
@pytest.mark.ping
def test_harness_pair_is_connected() -> None:
    with NetnsPair() as pair:
        assert pair.ping(pair.ns_a, pair.addr_b, count=1)
        assert pair.ping(pair.ns_b, pair.addr6_a, count=1)
        assert pair.run(pair.ns_b, "ip", "-j", "link", "show", "lo").stdout.count('"UP"') >= 1
        with pytest.raises(ValueError, match="not a namespace of this pair"):
            pair.run("some-other-ns", "true")


@root
@pytest.mark.ip
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_harness_cleans_up_when_the_body_raises(error: type[BaseException]) -> None:
    with pytest.raises(error), NetnsPair() as pair:
        names = {pair.ns_a, pair.ns_b}
        assert names <= _netns_names()
        sleeper = pair.spawn(pair.ns_a, "sleep", "60")
        raise error("boom")
    assert not names & _netns_names()
    assert sleeper.poll() is not None


@root
@pytest.mark.ip
def test_harness_cleans_up_on_sigterm(tmp_path: Path) -> None:
    # A separate interpreter creates a pair and waits; SIGTERM must still remove everything.
    script = (
        "import sys, time\n"
        "from tests.netns import NetnsPair\n"
        "with NetnsPair() as pair:\n"
        "    pair.spawn(pair.ns_b, 'sleep', '60')\n"
        "    print(pair.ns_a, pair.ns_b, flush=True)\n"
        "    time.sleep(30)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        names = set(proc.stdout.readline().split())
        assert len(names) == 2 and names <= _netns_names(), proc.stderr
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not names & _netns_names()


@root
@pytest.mark.ip
def test_harness_removes_leftovers_of_a_killed_run() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"tt-{dead.pid}-abcdef-a"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with NetnsPair() as pair:
            assert stale not in _netns_names()
            assert {pair.ns_a, pair.ns_b} <= _netns_names()  # its own, live ones stay
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)


@root
def test_a_tso_device_hands_its_super_packets_to_the_endpoints_batch_sealer(
        netns_pair: NetnsPair) -> None:
    """With TSO reads granted, the driver's glue (`attach_super_sender`) makes the device give
    whole super-packets to the endpoint's `seal_segments` (both `Client` and `Server` have
    one); without them, or for an endpoint without it, the device cuts segment by segment."""
    from tests.protocol.harness import Pair
    from tunnel.io.gso import GsoSender
    from tunnel.io.tso_rows import attach_super_sender, super_sender_wanted

    endpoints = Pair()
    faults: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            netns_pair.entered(netns_pair.ns_a):
        gso = GsoSender(sock)
        with TunDevice.open(netns_pair.ifname("t"), tso=True) as dev:
            assert dev.tso, "the kernel refused TUNSETOFFLOAD"
            for endpoint in (endpoints.client, endpoints.server):
                dev.on_super = None
                assert super_sender_wanted(dev, endpoint)
                sender = attach_super_sender(dev, endpoint, gso, lambda w, e: faults.append(w), 8)
                assert sender is not None and dev.on_super == sender.handle
                sender.begin(1.0)
                assert dev.super_budget == 8
            assert not super_sender_wanted(dev, object())
            assert attach_super_sender(dev, object(), gso, lambda w, e: None, 8) is None
        with TunDevice.open(netns_pair.ifname("p")) as plain:  # no TSO asked: plain reads
            assert not super_sender_wanted(plain, endpoints.client)
            assert attach_super_sender(plain, endpoints.client, gso, lambda w, e: None, 8) is None
            assert plain.on_super is None
    assert not faults


def _udp_checksum_verifies(packet: bytes) -> bool:
    """The UDP/IPv4 checksum over pseudo-header and datagram sums to all ones."""
    from tunnel.protocol.checksum import internet_sum

    hlen = (packet[0] & 0x0F) * 4
    udp = packet[hlen:]
    pseudo = packet[12:20] + bytes((0, 17)) + len(udp).to_bytes(2, "big")
    return internet_sum(pseudo + udp) == 0xFFFF


@root
@pytest.mark.parametrize(
    "native", [False, pytest.param(True, marks=pytest.mark.native_aead)],
    ids=["python", "native"])
def test_a_tso_devices_read_ahead_completes_every_partial_checksum(
        netns_pair: NetnsPair, native: bool) -> None:
    """With TSO reads the kernel leaves every UDP checksum partial. A burst is read ahead and
    completed in batch, a lone datagram on its own: either way each datagram read verifies,
    in the order sent, with its payload intact; `holds` says what is still inside the device
    (what a batch stopped at its limit must come back for). Both read-ahead loops: the
    Python one and the extension's (tunnel/_readahead.c)."""
    pair = netns_pair
    net = pair.new_subnet()
    room = memoryview(bytearray(2048))
    with pair.entered(pair.ns_a), TunDevice.open(pair.ifname("t"), tso=True) as dev:
        assert dev.tso, "the kernel refused TUNSETOFFLOAD"
        if native:
            assert dev.native_read_ahead, "the extension's read-ahead is not built"
        dev.native_read_ahead = native
        Path(f"/proc/sys/net/ipv6/conf/{dev.name}/disable_ipv6").write_text("1")
        configure_device(dev.name, mtu=1500, addresses=[ipaddress.IPv4Interface(f"{net[1]}/24")])
        sizes = [1, 2, 63, 64, 500, 1371, 1372, 1400, 1471, 1472]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for burst in (sizes * 4, [77]):  # 40 at once (batched), then a lone one
                for n, size in enumerate(burst):
                    sock.sendto(bytes([n & 0xFF]) * size, (str(net[2]), 9))
                assert wait_for(lambda: select.select([dev], [], [], 0)[0], 2)
                got = []
                while size := dev.read_packet(room):
                    packet = bytes(room[dev.read_offset : dev.read_offset + size])
                    assert room[:dev.read_offset] == bytes(dev.read_offset)  # plain, complete
                    assert _udp_checksum_verifies(packet), len(got)
                    got.append(packet[28:])
                    assert dev.holds() == (len(got) < len(burst))
                assert got == [bytes([n & 0xFF]) * size for n, size in enumerate(burst)]
                assert not dev.holds() and not dev.waiting()
        assert dev.rx_dropped == 0 and dev.rx_packets == 41
