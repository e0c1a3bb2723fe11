"""Runs inside a test namespace (tests/e2e/test_lane.py): the lone-packet lane
(`tunnel._aead.Lane`) against a real TUN device and real UDP sockets, every outcome once.

The "server" is a second socket in the same namespace with the other direction of the same
key (`DataKey`, the Python path), so what the lane seals is opened by the Python path and what
the Python path seals is opened by the lane. Prints one JSON object: what each case returned
and what arrived where. Bounded: a few dozen packets, every wait 2 s at most.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import select
import socket
import struct
import time
from typing import Any, cast

from core import BufferPool, FrameBuilder
from tests.io.hostile import hostile_datagrams
from tests.protocol.vector_keys import vector_key_pair
from tunnel._aead import Aead, Lane
from tunnel.io import lane as codes
from tunnel.io.gso import enable_gro
from tunnel.io.netlink import configure_device
from tunnel.io.tun import TunDevice
from tunnel.protocol.checksum import internet_sum
from tunnel.protocol.constants import PING_MAGIC
from tunnel.protocol.datachannel import register_data_channel

LOCAL = "10.99.0.2"  # the TUN's address (ours)
PEER = "10.99.0.1"  # the far end of the tunnel
APP_PORT = 40000
TSO_LOCAL = "10.98.0.2"  # the TSO TUN's address, and its far end
TSO_PEER = "10.98.0.1"


def _wait(sock: socket.socket | int) -> bool:
    return bool(select.select([sock], [], [], 2.0)[0])


def _ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    total = 28 + len(payload)
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    words = struct.unpack(">10H", header)
    csum = sum(words)
    while csum >> 16:
        csum = (csum & 0xFFFF) + (csum >> 16)
    header = header[:10] + struct.pack(">H", ~csum & 0xFFFF) + header[12:]
    # UDP checksum 0: none (allowed over IPv4).
    return header + struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def _transport_ok(packet: bytes) -> bool:
    """Whether an IPv4 packet's header checksum and its TCP/UDP checksum verify."""
    if internet_sum(packet[:20]) != 0xFFFF:
        return False
    total = struct.unpack_from(">H", packet, 2)[0]
    pseudo = packet[12:20] + struct.pack(">BBH", 0, packet[9], total - 20)
    return internet_sum(pseudo + packet[20:total]) == 0xFFFF


def _syn_ack(syn: bytes, seq: int) -> bytes:
    """The far end's SYN-ACK to an IPv4 TCP SYN (MSS 1460, no window scaling), checksummed."""
    src, dst = syn[16:20], syn[12:16]
    sport, dport, their_seq = struct.unpack_from(">HHI", syn, 20)
    tcp = bytearray(struct.pack(">HHIIBBHHH", dport, sport, seq, their_seq + 1, 6 << 4, 0x12,
                                65535, 0, 0) + bytes([2, 4, 0x05, 0xB4]))
    pseudo = src + dst + struct.pack(">BBH", 0, 6, len(tcp))
    struct.pack_into(">H", tcp, 16, ~internet_sum(pseudo + tcp) & 0xFFFF)
    ip = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 7, 0, 64, 6, 0, src,
                               dst))
    struct.pack_into(">H", ip, 10, ~internet_sum(ip) & 0xFFFF)
    return bytes(ip + tcp)


def _tso_cases(name: str, link: socket.socket, block: memoryview, headroom: int,
               run: memoryview, arm: Any, server_opens: Any) -> dict[str, object]:
    """The lane over a TUN with TSO reads (`set_offloaded`): a lone UDP datagram, whose
    checksum the kernel leaves partial, sealed with it completed; a TCP super-packet handed
    to the TSO path where it lies in the device's read area, then cut by the device into
    segments that verify. `arm(lane)` sets the lane's peer and send key."""
    out: dict[str, object] = {}
    with TunDevice.open(name, tso=True) as dev:
        out["tso_granted"] = dev.tso
        with open(f"/proc/sys/net/ipv6/conf/{dev.name}/disable_ipv6", "w") as knob:
            knob.write("1")
        configure_device(dev.name, mtu=1500,
                         addresses=[ipaddress.ip_interface(f"{TSO_LOCAL}/24")])
        lane = Lane(dev.fileno(), link.fileno(), dev.read_offset, block, headroom, run)
        lane.set_offloaded(dev.read_area)
        try:
            lane.set_offloaded(dev.read_area)
        except ValueError as exc:
            out["tso_set_twice"] = str(exc)
        arm(lane)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"seen by the kernel", (TSO_PEER, 9))
        _wait(dev.fileno())
        frame = os.read(dev.fileno(), 70000)
        out["tso_kernel_leaves_udp_partial"] = bool(frame[0] & 1)
        sender.sendto(b"partial checksum completed", (TSO_PEER, 9))
        _wait(dev.fileno())
        out["tso_udp"] = _kind(lane.device())
        opened = server_opens()
        out["tso_udp_opened"] = opened is not None and opened.endswith(b"completed")
        out["tso_udp_checksum_ok"] = opened is not None and _transport_ok(opened)
        stream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stream.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            stream.connect((TSO_PEER, 80))
        _wait(dev.fileno())
        syn = os.read(dev.fileno(), 70000)[10:]
        dev.write(memoryview(_syn_ack(syn, 1000)))
        time.sleep(0.05)
        while select.select([dev.fileno()], [], [], 0.05)[0]:  # its ACK
            os.read(dev.fileno(), 70000)
        stream.send(bytes(range(256)) * 80)  # 20 KB: the first flight leaves as one GSO packet
        _wait(dev.fileno())
        result = lane.device()
        out["tso_super"] = _kind(result)
        segments = checked = 0
        if _kind(result) == "TAKE_SUPER":
            dev.lane_super(result >> 5)
            out["tso_super_held"] = dev.holds()
            room = memoryview(bytearray(2048))
            while size := dev.read_packet(room):
                segments += 1
                checked += _transport_ok(bytes(room[10:10 + size]))
        out["tso_super_segments"] = segments
        out["tso_segments_verify"] = segments > 1 and checked == segments
        stream.close()
        sender.close()
    return out


class _Ring:
    def __init__(self, current: object) -> None:
        self.current = current


class _Session:
    """The attributes of a Session a lane plan is checked against."""

    def __init__(self, key: object, remote_addr: tuple[str, int]) -> None:
        self.ring = _Ring(key)
        self.remote_addr = remote_addr
        self.tx_peer_id: int | None = 5
        self.comp: object = None
        self.mssfix: int | None = 1400
        self.data_keys: list[object] = [key] + [None] * 7


class _Entry:
    def __init__(self, session: _Session, lane_plan: tuple[object, ...] | None,
                 vip_int: int = -1) -> None:
        self.session = session
        self.lane_plan = lane_plan
        self.lane_open_plan: tuple[object, ...] | None = None
        self.vip_int = vip_int


def _kind(result: int) -> str:
    names = {value: name for name, value in vars(codes).items()
             if name.isupper() and isinstance(value, int) and 0 <= value <= 15
             and not name.startswith("_") and name not in ("HANDLED",)}
    return names[result & 15]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    out: dict[str, object] = {}
    builder = FrameBuilder(tun_mtu=1500)
    register_data_channel(builder)
    pool = BufferPool(builder.finalize(), 4)
    ours, theirs = vector_key_pair()  # (the lane is the client here)
    with TunDevice.open(args.name) as dev:
        # No IPv6 on it: its router solicitations would be reads the cases do not expect.
        with open(f"/proc/sys/net/ipv6/conf/{dev.name}/disable_ipv6", "w") as knob:
            knob.write("1")
        configure_device(dev.name, mtu=1500,
                         addresses=[ipaddress.ip_interface(f"{LOCAL}/24")])
        link = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        link.bind(("127.0.0.1", 0))
        link.setblocking(False)
        enable_gro(link)
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("127.0.0.1", 0))
        app = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        app.bind((LOCAL, APP_PORT))
        buf = pool.acquire()
        headroom = buf.offset
        buf.reset(0)
        block = buf.tailroom_view()
        buf.reset(headroom)
        run = memoryview(bytearray(65536))
        lane = Lane(dev.fileno(), link.fileno(), dev.read_offset, block, headroom, run)
        sealer, opener = ours.sealer, ours.opener
        assert isinstance(sealer, Aead) and isinstance(opener, Aead)
        lane.set_peer(*server.getsockname())
        lane.set_send(ours, sealer, ours._v2_word | 7, True, True)
        lane.set_open(0, opener, ours.replay.accept)
        out["vnet"] = dev.read_offset
        out["empty"] = _kind(lane.link(time.monotonic()))

        scratch = pool.acquire()

        def seal_theirs(payload: bytes, peer_id: int | None = 3) -> bytes:
            scratch.reset(headroom)
            scratch.append(payload)
            theirs.seal(scratch, peer_id)
            return bytes(scratch.data)

        def to_lane(datagram: bytes, sender: socket.socket = server) -> str:
            sender.sendto(datagram, link.getsockname())
            _wait(link)
            return _kind(lane.link(time.monotonic()))

        # -- link side ---------------------------------------------------------------------
        packet = _ipv4_udp(PEER, LOCAL, 5555, APP_PORT, b"through the lane")
        datagram = seal_theirs(packet)
        out["deliver"] = to_lane(datagram)
        out["delivered_payload"] = (app.recv(2048).decode() if _wait(app) else None)
        out["opened_counted_by_replay"] = ours.replay.accepted
        out["replay"] = to_lane(datagram)
        tampered = bytearray(seal_theirs(packet))
        tampered[-1] ^= 1
        out["tampered"] = to_lane(bytes(tampered))
        out["keepalive"] = to_lane(seal_theirs(PING_MAGIC))
        payload_at = headroom + 24
        out["keepalive_left_in_block"] = bytes(block[payload_at:payload_at + 16]) == PING_MAGIC
        out["v1"] = to_lane(seal_theirs(packet, None))
        out["v1_payload"] = (app.recv(2048).decode() if _wait(app) else None)
        out["control"] = to_lane(bytes([(4 << 3) | 0]) + bytes(30))
        out["control_from"] = list(lane.addr or ())
        out["control_size"] = lane.size
        out["control_lone"] = lane.lone
        out["server_addr"] = list(server.getsockname())
        out["other_source"] = to_lane(seal_theirs(packet), other)
        out["other_key_id"] = to_lane(bytes([(9 << 3) | 1]) + bytes(40))
        out["empty_datagram"] = to_lane(b"")
        server.sendto(seal_theirs(packet), link.getsockname())
        server.sendto(seal_theirs(packet), link.getsockname())
        time.sleep(0.05)
        _wait(link)
        result = lane.link(time.monotonic())
        out["two_queued"] = _kind(result)
        out["two_queued_lone"] = lane.lone
        while select.select([link], [], [], 0.05)[0]:  # the rest, to start clean
            link.recv(65536)
        while select.select([app], [], [], 0.05)[0]:
            app.recv(2048)

        # -- device side -------------------------------------------------------------------
        def from_device() -> str:
            _wait(dev.fileno())
            return _kind(lane.device())

        def server_opens() -> bytes | None:
            if not _wait(server):
                return None
            scratch.reset(headroom)
            scratch.inc_len(server.recv_into(scratch.tailroom_view()))
            return bytes(scratch.data) if theirs.open(scratch, time.monotonic()) else None

        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"out through the lane", (PEER, 9))
        out["send"] = from_device()
        opened = server_opens()
        out["sent_opened"] = opened is not None and opened.endswith(b"out through the lane")
        out["send_pid"] = ours.send_packet_id
        sender.sendto(b"one", (PEER, 9))
        sender.sendto(b"two", (PEER, 9))
        time.sleep(0.05)
        out["two_waiting"] = from_device()
        out["then_lone"] = from_device()
        server_opens()
        lane.set_send(None)
        sender.sendto(b"no key", (PEER, 9))
        out["no_key"] = from_device()
        lane.set_send(ours, sealer, ours._v2_word | 7, True, True)
        syn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        syn.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # the SYN is out; no answer comes
            syn.connect((PEER, 80))
        out["syn_under_mssfix"] = from_device()
        syn.close()
        while select.select([dev.fileno()], [], [], 0.2)[0]:  # its retransmissions
            lane.device()
        before = ours.send_packet_id
        ours._send_pid = 0xFFFFFFFF
        sender.sendto(b"at the limit", (PEER, 9))
        out["pid_limit"] = from_device()
        out["pid_limit_unchanged"] = ours._send_pid == 0xFFFFFFFF
        ours._send_pid = before
        lane.set_send(ours, sealer, ours._v1_op, False, False)
        sender.sendto(b"as V1", (PEER, 9))
        out["send_v1"] = from_device()
        opened = server_opens()
        out["sent_v1_opened"] = opened is not None and opened.endswith(b"as V1")

        def arm(tso_lane: Lane) -> None:
            tso_lane.set_peer(*server.getsockname())
            tso_lane.set_send(ours, sealer, ours._v2_word | 7, True, True)

        out.update(_tso_cases(args.name + "t", link, block, headroom, run, arm, server_opens))

        # -- a server's lane: it reads, the caller finds the client, a second call ---------
        server_lane = Lane(dev.fileno(), link.fileno(), dev.read_offset, block, headroom, run)
        host, port = server.getsockname()
        sender.sendto(b"to a client", (PEER, 9))
        _wait(dev.fileno())
        out["server_read"] = _kind(server_lane.device())
        out["server_held"] = server_lane.held
        out["server_seal_send"] = _kind(server_lane.seal_send(
            ours, sealer, ours._v2_word | 5, True, True, host, port))
        opened = server_opens()
        out["server_sent_opened"] = opened is not None and opened.endswith(b"to a client")
        try:
            server_lane.seal_send(ours, sealer, ours._v2_word | 5, True, True, host, port)
        except ValueError as exc:
            out["server_seal_unheld"] = str(exc)
        vip = int(ipaddress.ip_address(PEER))

        # -- a server's lane routing by itself, on the entry's plan while it holds ---------
        routed = _Session(ours, (host, port))
        plan = (routed, ours, routed.remote_addr, routed.tx_peer_id, None, routed.mssfix,
                sealer, ours._v2_word | 5, True, True, host, port)
        entry = _Entry(routed, plan)
        route_lane = Lane(dev.fileno(), link.fileno(), dev.read_offset, block, headroom, run)
        route_lane.set_routes({vip: cast(Any, entry)})

        def routed_read(payload: bytes, to: str = PEER) -> str:
            sender.sendto(payload, (to, 9))
            _wait(dev.fileno())
            kind = _kind(route_lane.device())
            if kind != "SENT":  # held for the Python path, nothing sent
                kind += " held" if route_lane.held else " not held"
                kind += " sent" if select.select([server], [], [], 0.1)[0] else ""
            return kind

        out["routed"] = routed_read(b"routed by the lane")
        out["routed_entry"] = route_lane.entry is cast(Any, entry)
        opened = server_opens()
        out["routed_opened"] = opened is not None and opened.endswith(b"routed by the lane")
        routed.remote_addr = (host, port)  # a float: an equal address, another object
        out["routed_after_float"] = routed_read(b"x")
        out["routed_after_float_entry"] = route_lane.entry
        routed.remote_addr = cast(Any, plan[2])
        routed.ring.current = object()  # a rekey
        out["routed_after_rekey"] = routed_read(b"x")
        routed.ring.current = ours
        routed.tx_peer_id = 6
        out["routed_after_peer_id"] = routed_read(b"x")
        routed.tx_peer_id = 5
        routed.mssfix = 1300
        out["routed_after_mssfix"] = routed_read(b"x")
        routed.mssfix = 1400
        routed.comp = object()
        out["routed_after_comp"] = routed_read(b"x")
        routed.comp = None
        entry.session = _Session(ours, cast(Any, plan[2]))
        out["routed_new_session"] = routed_read(b"x")
        entry.session = routed
        out["routed_again"] = routed_read(b"x")
        server_opens()
        entry.lane_plan = None
        out["routed_no_plan"] = routed_read(b"x")
        entry.lane_plan = plan
        out["routed_elsewhere"] = routed_read(b"x", "10.99.0.3")  # not in the routes
        route_lane.set_routes(None)
        out["routed_without_routes"] = routed_read(b"x")
        try:
            route_lane.set_routes([])  # type: ignore[arg-type]
        except TypeError as exc:
            out["routed_bad_routes"] = str(exc)

        # -- ... and finding the client of a datagram by its peer-id, on its open plan -----
        # (seal_theirs sends with peer-id 3; the plan's address is the sending socket's.)
        opening = _Session(ours, server.getsockname())
        peer = _Entry(opening, None, vip)
        peer.lane_open_plan = open_plan = (
            opening, ours, opening.remote_addr, None, opening.mssfix, peer.vip_int,
            0, opener, ours.replay.accept, host, port, vip, True, True)
        route_lane.set_peers([None, None, None, cast(Any, peer), None])

        def peer_read(datagram: bytes, sender: socket.socket = server) -> str:
            sender.sendto(datagram, link.getsockname())
            _wait(link)
            kind = _kind(route_lane.link(time.monotonic()))
            if kind == "LINK_TAKE":
                kind += " held" if route_lane.held else " not held"
            elif route_lane.entry is not cast(Any, peer):
                kind += " without the entry"
            return kind

        out["peer_open"] = peer_read(seal_theirs(packet))
        out["peer_open_payload"] = (app.recv(2048).decode() if _wait(app) else None)
        replayed = seal_theirs(packet)
        peer_read(replayed)
        if _wait(app):
            app.recv(2048)
        out["peer_replay"] = peer_read(replayed)
        tampered = bytearray(seal_theirs(packet))
        tampered[-1] ^= 1
        out["peer_tampered"] = peer_read(bytes(tampered))
        out["peer_float"] = peer_read(seal_theirs(packet), other)  # from another address
        out["peer_other_key_id"] = peer_read(bytes([(9 << 3) | 1, 0, 0, 3]) + bytes(40))
        out["peer_unknown_id"] = peer_read(seal_theirs(packet, 4))
        out["peer_beyond_the_list"] = peer_read(seal_theirs(packet, 70000))
        for case, attr, value in (("address", "remote_addr", tuple(server.getsockname())),
                                  ("rekey", "current", object()),
                                  ("key_slot", "data_keys", [object()] * 8),
                                  ("comp", "comp", object()), ("mssfix", "mssfix", 1300)):
            holder: object = opening.ring if attr == "current" else opening
            was = getattr(holder, attr)
            setattr(holder, attr, value)
            out[f"peer_after_{case}"] = peer_read(seal_theirs(packet))
            setattr(holder, attr, was)
        peer.vip_int = int(str(vip))  # an equal int, another object
        out["peer_after_vip"] = peer_read(seal_theirs(packet))
        peer.vip_int = cast(Any, open_plan[5])
        peer.session = _Session(ours, opening.remote_addr)
        out["peer_new_session"] = peer_read(seal_theirs(packet))
        peer.session = opening
        peer.lane_open_plan = None
        out["peer_no_plan"] = peer_read(seal_theirs(packet))
        peer.lane_open_plan = open_plan
        out["peer_again"] = peer_read(seal_theirs(packet))
        out["peer_again_payload"] = (app.recv(2048).decode() if _wait(app) else None)
        try:
            route_lane.set_peers({})  # type: ignore[arg-type]
        except TypeError as exc:
            out["peer_bad_peers"] = str(exc)
        while select.select([app], [], [], 0.05)[0]:
            app.recv(2048)

        def server_link(datagram: bytes, expect_host: str, expect_port: int, vip: int,
                        deliver: bool = True) -> str:
            server.sendto(datagram, link.getsockname())
            _wait(link)
            read = _kind(server_lane.link(time.monotonic()))
            if read != "LINK_TAKE" or not server_lane.held:
                return f"read {read}"
            return _kind(server_lane.open_write(0, opener, ours.replay.accept, expect_host,
                                                expect_port, vip, True, deliver,
                                                time.monotonic()))

        out["server_deliver"] = server_link(seal_theirs(packet), host, port, vip)
        out["server_delivered_payload"] = (app.recv(2048).decode() if _wait(app) else None)
        out["server_elsewhere"] = server_link(seal_theirs(packet), host, port + 1, vip)
        out["server_elsewhere_still_held"] = server_lane.held
        out["server_bad_source"] = server_link(seal_theirs(packet), host, port, vip + 1)
        out["server_no_vip"] = server_link(seal_theirs(packet), host, port, -1, False)
        out["server_replay"] = server_link(datagram, host, port, vip)

        # -- hostile datagrams from the peer's own address, through both lanes -------------
        # (tests/io/hostile.py's set, and every truncation and one-byte flip of a real
        # datagram: what the I/O fuzz test sends from elsewhere reaches the native open here.)
        rng = random.Random(15)
        valid = seal_theirs(packet)
        hostile = hostile_datagrams(rng, 3)
        hostile += [valid[:n] for n in range(len(valid))]
        hostile += [valid[:at] + bytes([valid[at] ^ 0x01]) + valid[at + 1:]
                    for at in range(len(valid))]
        kinds: dict[str, int] = {}
        # (route_lane finds peer-id 3 and its open plan itself: the plan's key opens.)
        for forged in hostile:
            for which in (lane, server_lane, route_lane):
                server.sendto(forged, link.getsockname())
                _wait(link)
                kind = _kind(which.link(time.monotonic()))
                if which is server_lane and kind == "LINK_TAKE" and server_lane.held:
                    kind = _kind(server_lane.open_write(0, opener, ours.replay.accept, host,
                                                        port, vip, True, True,
                                                        time.monotonic()))
                kinds[kind] = kinds.get(kind, 0) + 1
        out["hostile_sent"] = 3 * len(hostile)
        out["hostile_kinds"] = kinds
        out["hostile_reached_the_device"] = bool(select.select([app], [], [], 0.2)[0])
        out["after_hostile"] = to_lane(seal_theirs(packet))
        out["after_hostile_payload"] = (app.recv(2048).decode() if _wait(app) else None)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
