"""Steering for a multi-worker server: which worker process sees which packet.

Two kernel programs keep every packet of one client on the worker that owns its session:

- **UDP** (`attach_reuseport_steering`): N sockets bound to one port with `SO_REUSEPORT` form
  one group; a classic BPF program attached with `SO_ATTACH_REUSEPORT_CBPF` returns the index
  of the socket (= worker) for each datagram. The kernel's default is a hash of the 4-tuple,
  which sends a client to another worker when its source address changes (NAT rebinding,
  float). Ours looks at the payload instead: a P_DATA_V2 packet carries the 24-bit peer-id
  (worker = peer_id % N: worker i hands out only peer-ids i, i+N, ...); every control packet
  carries the client's 8-byte session id right after the opcode, in clear under every wrap
  (worker = first 4 bytes of it % N), which is the same for the stateless cookie exchange,
  the handshake and every renegotiation of that session, from whatever address.
  P_DATA_V1 (pre-2.4 clients, no peer-id) is hashed the same way as a control packet by its
  first word, which is meaningless: such clients need `--workers 1`.
- **TUN** (`TunSteering`): the device is multi-queue (a queue per worker) and an eBPF program
  set with `TUNSETSTEERINGEBPF` picks the queue of each packet the kernel sends into the
  tunnel: a longest-prefix-match lookup of the destination address in a BPF map that the
  workers fill as clients get addresses (their virtual address and iroutes -> worker index),
  so the worker that reads a packet is the one holding the session it is for. A destination
  nobody holds goes to queue 0 (and is dropped there as "no route", as with one process).

Both programs return indexes into arrays whose order is the order the sockets joined the
group / the queues were attached; closing one renumbers the rest. The supervisor therefore
opens all of them itself, keeps them open for its lifetime and hands them to the workers, so a
worker that dies and is restarted takes over the same index.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import ipaddress
import os
import platform
import socket
import struct

__all__ = [
    "SessionSteering",
    "SteeringError",
    "TunSteering",
    "attach_reuseport_steering",
    "reuseport_program",
]

SO_ATTACH_REUSEPORT_CBPF = 51
SO_ATTACH_REUSEPORT_EBPF = 52
TUNSETSTEERINGEBPF = 0x800454E0  # _IOR('T', 224, int)


class SteeringError(OSError):
    """The kernel refused a steering program or map (one line, with errno)."""


# -- classic BPF: the reuseport group ------------------------------------------------------

# <linux/filter.h> classic opcodes
_LD_B_ABS = 0x30
_LD_W_ABS = 0x20
_ALU_RSH_K = 0x74
_ALU_AND_K = 0x54
_ALU_MOD_K = 0x94
_JEQ_K = 0x15
_RET_A = 0x16
_P_DATA_V2 = 9
_SOCK_FILTER = struct.Struct("HBBI")


def reuseport_program(workers: int) -> list[tuple[int, int, int, int]]:
    """The classic BPF program (code, jt, jf, k) that returns the worker of a UDP payload.

    Offset 0 is the first byte of the UDP payload (the kernel pulls the UDP header before it
    runs a reuseport program). A datagram too short for a load ends the program with 0:
    worker 0 gets it (and drops it, as any worker would).
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    return [
        (_LD_B_ABS, 0, 0, 0),            # A = opcode << 3 | key_id
        (_ALU_RSH_K, 0, 0, 3),           # A = opcode
        (_JEQ_K, 0, 4, _P_DATA_V2),      # data: next; control: +4
        (_LD_W_ABS, 0, 0, 0),            # A = opcode/key | peer-id (24 bits)
        (_ALU_AND_K, 0, 0, 0xFFFFFF),
        (_ALU_MOD_K, 0, 0, workers),
        (_RET_A, 0, 0, 0),
        (_LD_W_ABS, 0, 0, 1),            # A = first 4 bytes of the client's session id
        (_ALU_MOD_K, 0, 0, workers),
        (_RET_A, 0, 0, 0),
    ]


def attach_reuseport_steering(sock: socket.socket, workers: int) -> None:
    """Attach the program to the reuseport group `sock` belongs to (any member will do)."""
    program = reuseport_program(workers)
    code = b"".join(_SOCK_FILTER.pack(*insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        raise SteeringError(
            exc.errno or errno.EIO,
            f"cannot attach the reuseport steering program: {exc.strerror}") from None


# -- eBPF: the TUN queues -----------------------------------------------------------------

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "riscv64": 280, "ppc64le": 361,
            "s390x": 351}
_BPF_MAP_CREATE, _BPF_MAP_UPDATE_ELEM, _BPF_MAP_DELETE_ELEM, _BPF_PROG_LOAD = 0, 2, 3, 5
_BPF_MAP_TYPE_LPM_TRIE = 11
_BPF_F_NO_PREALLOC = 1
_BPF_PROG_TYPE_SOCKET_FILTER = 1
_HELPER_MAP_LOOKUP_ELEM = 1
_HELPER_SKB_LOAD_BYTES = 26
_KEY = struct.Struct("<I16s")  # struct bpf_lpm_trie_key: prefixlen (host order), address
_VALUE = struct.Struct("<I")
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


# eBPF opcodes (<linux/bpf.h>)
_MOV64_X, _MOV64_K = 0xBF, 0xB7
_ADD64_K, _RSH64_K = 0x07, 0x77
_LD_ABS_B = 0x30
_ST_W = 0x62
_LDX_W = 0x61
_JEQ_K6, _JNE_K6 = 0x15, 0x55
_JA = 0x05
_CALL, _EXIT = 0x85, 0x95
_LD_IMM64 = 0x18
_PSEUDO_MAP_FD = 1
_R0, _R1, _R2, _R3, _R4, _R6, _R10 = 0, 1, 2, 3, 4, 6, 10


def _steering_program(map_fd: int) -> bytes:
    """eBPF: queue = lookup(LPM map, destination as a 128-bit key (IPv4 v4-mapped)) or 0.

    The key lives on the stack at fp-24: prefixlen u32, then 16 address bytes.
    """
    key = -24
    body = [
        _insn(_MOV64_X, _R6, _R1),                      # r6 = skb (LD_ABS needs it there)
        _insn(_LD_ABS_B, imm=0),                        # r0 = first byte of the IP header
        _insn(_RSH64_K, _R0, imm=4),                    # r0 = IP version
        _insn(_ST_W, _R10, off=key, imm=128),           # key.prefixlen = 128
        _insn(_JEQ_K6, _R0, off=9, imm=6),              # IPv6: to v6 (+9)
        _insn(_JNE_K6, _R0, off=23, imm=4),             # neither: miss (+23)
        # IPv4: ::ffff:a.b.c.d
        _insn(_ST_W, _R10, off=key + 4, imm=0),
        _insn(_ST_W, _R10, off=key + 8, imm=0),
        _insn(_ST_W, _R10, off=key + 12, imm=struct.unpack("<i", b"\0\0\xff\xff")[0]),
        _insn(_MOV64_K, _R2, imm=16),                   # offset of the IPv4 destination
        _insn(_MOV64_X, _R3, _R10),
        _insn(_ADD64_K, _R3, imm=key + 16),
        _insn(_MOV64_K, _R4, imm=4),
        _insn(_JA, off=4),                              # to load (+4)
        # v6:
        _insn(_MOV64_K, _R2, imm=24),                   # offset of the IPv6 destination
        _insn(_MOV64_X, _R3, _R10),
        _insn(_ADD64_K, _R3, imm=key + 4),
        _insn(_MOV64_K, _R4, imm=16),
        # load:
        _insn(_MOV64_X, _R1, _R6),
        _insn(_CALL, imm=_HELPER_SKB_LOAD_BYTES),       # r0 = 0 or a negative error
        _insn(_JNE_K6, _R0, off=8, imm=0),              # short packet: miss (+8)
        _insn(_LD_IMM64, _R1, _PSEUDO_MAP_FD, imm=map_fd),
        _insn(0, imm=0),
        _insn(_MOV64_X, _R2, _R10),
        _insn(_ADD64_K, _R2, imm=key),
        _insn(_CALL, imm=_HELPER_MAP_LOOKUP_ELEM),
        _insn(_JEQ_K6, _R0, off=2, imm=0),              # not found: miss (+2)
        _insn(_LDX_W, _R0, _R0, off=0),                 # r0 = the worker index
        _insn(_EXIT),
        # miss:
        _insn(_MOV64_K, _R0, imm=0),
        _insn(_EXIT),
    ]
    return b"".join(body)


class _Bpf:
    """The bpf(2) system call through ctypes (Python has no binding)."""

    def __init__(self) -> None:
        number = _SYS_BPF.get(platform.machine())
        if number is None:
            raise SteeringError(errno.ENOSYS, f"bpf(2): unknown system call number on "
                                               f"{platform.machine()}")
        self._number = number
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._libc.syscall.restype = ctypes.c_long

    def call(self, cmd: int, attr: bytes, what: str) -> int:
        buffer = ctypes.create_string_buffer(attr, 128)
        result = int(self._libc.syscall(ctypes.c_long(self._number), ctypes.c_int(cmd),
                                        buffer, ctypes.c_uint(128)))
        if result < 0:
            err = ctypes.get_errno()
            raise SteeringError(err, f"{what}: {os.strerror(err)}")
        return result


class TunSteering:
    """The TUN queue-selection program and its map: destination network -> worker index.

    Created by the supervisor before the workers exist; the map's fd is inherited by them
    (`TunSteering.from_fd(fd)` in a worker), so each worker adds and removes the entries of
    its own clients directly, without asking the supervisor.
    """

    def __init__(self, map_fd: int, prog_fd: int | None = None) -> None:
        self.map_fd = map_fd
        self.prog_fd = prog_fd
        self._bpf = _Bpf()

    @classmethod
    def create(cls, max_entries: int = 65536) -> TunSteering:
        bpf = _Bpf()
        attr = struct.pack("<IIIII", _BPF_MAP_TYPE_LPM_TRIE, _KEY.size, _VALUE.size,
                           max_entries, _BPF_F_NO_PREALLOC)
        map_fd = bpf.call(_BPF_MAP_CREATE, attr, "cannot create the TUN steering map")
        try:
            prog_fd = _load_program(bpf, _steering_program(map_fd),
                                    "cannot load the TUN steering program")
        except SteeringError:
            os.close(map_fd)
            raise
        os.set_inheritable(map_fd, False)
        os.set_inheritable(prog_fd, False)
        return cls(map_fd, prog_fd)

    @classmethod
    def from_fd(cls, map_fd: int) -> TunSteering:
        return cls(map_fd)

    def attach(self, tun_fd: int) -> None:
        """Make the program choose the queues of the device `tun_fd` is a queue of."""
        assert self.prog_fd is not None
        try:
            fcntl.ioctl(tun_fd, TUNSETSTEERINGEBPF, struct.pack("i", self.prog_fd))
        except OSError as exc:
            raise SteeringError(
                exc.errno or errno.EIO,
                f"cannot attach the TUN steering program: {exc.strerror}") from None

    @staticmethod
    def _key(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bytes:
        if network.version == 4:
            return _KEY.pack(96 + network.prefixlen, _V4_MAPPED + network.network_address.packed)
        return _KEY.pack(network.prefixlen, network.network_address.packed)

    def set(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network, worker: int) -> None:
        key = ctypes.create_string_buffer(self._key(network), _KEY.size)
        value = ctypes.create_string_buffer(_VALUE.pack(worker), _VALUE.size)
        attr = struct.pack("<IIQQQ", self.map_fd, 0, ctypes.addressof(key),
                           ctypes.addressof(value), 0)
        self._bpf.call(_BPF_MAP_UPDATE_ELEM, attr, f"cannot steer {network}")

    def remove(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        key = ctypes.create_string_buffer(self._key(network), _KEY.size)
        attr = struct.pack("<IIQ", self.map_fd, 0, ctypes.addressof(key))
        try:
            self._bpf.call(_BPF_MAP_DELETE_ELEM, attr, f"cannot unsteer {network}")
        except SteeringError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def close(self) -> None:
        for fd in (self.map_fd, self.prog_fd):
            if fd is not None:
                os.close(fd)
        self.prog_fd = None


# -- eBPF: the reuseport group, balanced -------------------------------------------------

_BPF_MAP_TYPE_HASH, _BPF_MAP_TYPE_ARRAY, _BPF_MAP_TYPE_LRU_HASH = 1, 2, 9
_HELPER_MAP_UPDATE_ELEM = 2
_MOD64_K, _AND64_K = 0x97, 0x57
_LD_ABS_W = 0x20
_STX_W = 0x63
_R7 = 7
_P_CONTROL_HARD_RESET_CLIENT_V2, _P_CONTROL_HARD_RESET_CLIENT_V3 = 7, 10
_SID = struct.Struct("8s")


def _assemble(items: list[tuple[object, ...]]) -> bytes:
    """eBPF instructions with symbolic jump targets: ("label", name) marks a place; an
    instruction's `off` may be a label name (resolved relative to the next instruction).
    LD_IMM64 takes two slots."""
    places: dict[str, int] = {}
    slot = 0
    for item in items:
        if item[0] == "label":
            places[str(item[1])] = slot
        else:
            slot += 2 if item[0] == _LD_IMM64 else 1
    out = []
    slot = 0
    for item in items:
        if item[0] == "label":
            continue
        code, dst, src, off, imm = item
        slot += 2 if code == _LD_IMM64 else 1
        if isinstance(off, str):
            off = places[off] - slot
        out.append(_insn(int(code), int(dst), int(src), int(off), int(imm)))  # type: ignore[call-overload]
        if code == _LD_IMM64:
            out.append(_insn(0))
    return b"".join(out)


def _session_program(workers: int, pinned_fd: int, pending_fd: int, counter_fd: int) -> bytes:
    """eBPF for the reuseport group: the socket (= worker) of a UDP payload.

    - P_DATA_V2: peer_id % N (worker i hands out the peer-ids i, i + N, ...);
    - a control packet: its client session id (bytes 1..8) in `pinned` (sessions that
      completed a handshake, written by the supervisor), else in `pending` (an LRU map), else
      - a client's first packet (HARD_RESET_CLIENT_V2/V3): the next worker in turn (a counter),
        remembered in `pending`, so the handshakes are spread evenly over the workers;
      - anything else: the first word of the session id % N.
    Stack: fp-8 the session id, fp-12 the counter's key, fp-16 the chosen worker.
    """
    sid, ckey, value = -8, -12, -16
    return _assemble([
        (_MOV64_X, _R6, _R1, 0, 0),                    # r6 = skb (LD_ABS needs it there)
        (_LD_ABS_B, 0, 0, 0, 0),                       # r0 = opcode << 3 | key_id
        (_RSH64_K, _R0, 0, 0, 3),
        (_JEQ_K6, _R0, 0, "data", _P_DATA_V2),
        (_MOV64_X, _R7, _R0, 0, 0),                    # r7 = opcode
        (_MOV64_X, _R1, _R6, 0, 0),
        (_MOV64_K, _R2, 0, 0, 1),
        (_MOV64_X, _R3, _R10, 0, 0),
        (_ADD64_K, _R3, 0, 0, sid),
        (_MOV64_K, _R4, 0, 0, 8),
        (_CALL, 0, 0, 0, _HELPER_SKB_LOAD_BYTES),      # the session id -> fp-8
        (_JNE_K6, _R0, 0, "zero", 0),                  # too short: worker 0 (drops it)
        (_LD_IMM64, _R1, _PSEUDO_MAP_FD, 0, pinned_fd),
        (_MOV64_X, _R2, _R10, 0, 0),
        (_ADD64_K, _R2, 0, 0, sid),
        (_CALL, 0, 0, 0, _HELPER_MAP_LOOKUP_ELEM),
        (_JNE_K6, _R0, 0, "found", 0),
        (_LD_IMM64, _R1, _PSEUDO_MAP_FD, 0, pending_fd),
        (_MOV64_X, _R2, _R10, 0, 0),
        (_ADD64_K, _R2, 0, 0, sid),
        (_CALL, 0, 0, 0, _HELPER_MAP_LOOKUP_ELEM),
        (_JNE_K6, _R0, 0, "found", 0),
        (_JEQ_K6, _R7, 0, "assign", _P_CONTROL_HARD_RESET_CLIENT_V2),
        (_JEQ_K6, _R7, 0, "assign", _P_CONTROL_HARD_RESET_CLIENT_V3),
        (_LDX_W, _R0, _R10, sid, 0),                   # not a first packet: hash
        (_MOD64_K, _R0, 0, 0, workers),
        (_EXIT, 0, 0, 0, 0),
        ("label", "found"),
        (_LDX_W, _R0, _R0, 0, 0),
        (_EXIT, 0, 0, 0, 0),
        ("label", "assign"),
        (_ST_W, _R10, 0, ckey, 0),
        (_LD_IMM64, _R1, _PSEUDO_MAP_FD, 0, counter_fd),
        (_MOV64_X, _R2, _R10, 0, 0),
        (_ADD64_K, _R2, 0, 0, ckey),
        (_CALL, 0, 0, 0, _HELPER_MAP_LOOKUP_ELEM),
        (_JEQ_K6, _R0, 0, "zero", 0),
        (_LDX_W, _R1, _R0, 0, 0),                      # r1 = the counter
        (_MOV64_X, _R2, _R1, 0, 0),
        (_ADD64_K, _R2, 0, 0, 1),
        (_STX_W, _R0, _R2, 0, 0),                      # counter + 1 (a race only repeats a turn)
        (_MOD64_K, _R1, 0, 0, workers),
        (_STX_W, _R10, _R1, value, 0),
        (_LD_IMM64, _R1, _PSEUDO_MAP_FD, 0, pending_fd),
        (_MOV64_X, _R2, _R10, 0, 0),
        (_ADD64_K, _R2, 0, 0, sid),
        (_MOV64_X, _R3, _R10, 0, 0),
        (_ADD64_K, _R3, 0, 0, value),
        (_MOV64_K, _R4, 0, 0, 0),                      # BPF_ANY
        (_CALL, 0, 0, 0, _HELPER_MAP_UPDATE_ELEM),
        (_LDX_W, _R0, _R10, value, 0),
        (_EXIT, 0, 0, 0, 0),
        ("label", "data"),
        (_LD_ABS_W, 0, 0, 0, 0),                       # r0 = opcode/key | peer-id
        (_AND64_K, _R0, 0, 0, 0xFFFFFF),
        (_MOD64_K, _R0, 0, 0, workers),
        (_EXIT, 0, 0, 0, 0),
        ("label", "zero"),
        (_MOV64_K, _R0, 0, 0, 0),
        (_EXIT, 0, 0, 0, 0),
    ])


def _load_program(bpf: _Bpf, program: bytes, what: str) -> int:
    license_ = ctypes.create_string_buffer(b"GPL")
    code = ctypes.create_string_buffer(program, len(program))
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack("<IIQQIIQ", _BPF_PROG_TYPE_SOCKET_FILTER, len(program) // 8,
                       ctypes.addressof(code), ctypes.addressof(license_), 1, len(log),
                       ctypes.addressof(log))
    try:
        return bpf.call(_BPF_PROG_LOAD, attr, what)
    except SteeringError as exc:
        detail = log.value.decode(errors="replace").strip().splitlines()
        if detail:
            raise SteeringError(exc.errno, f"{exc.strerror} ({detail[-1]})") from None
        raise


class SessionSteering:
    """The reuseport group's program that balances new sessions over the workers.

    The classic program (`reuseport_program`) picks a session's worker by its client-chosen
    session id, which is random: with C clients on N workers all of them land on one worker
    with probability N^(1-C) (1 in 8 for 4 clients on 2). This one hands the first packet of
    every new session to the next worker in turn and remembers the choice, so a session stays
    where it started: in `pending` (an LRU map, bounded: a flood of resets only evicts other
    unfinished handshakes, which retry) until its handshake completes, then in `pinned`
    (written by the supervisor when a worker reports the session, removed when it ends),
    which nothing from the network can evict. Data packets go by peer-id as before.
    """

    def __init__(self, workers: int, pinned_fd: int, pending_fd: int, counter_fd: int,
                 prog_fd: int) -> None:
        self.workers = workers
        self.pinned_fd, self.pending_fd, self.counter_fd = pinned_fd, pending_fd, counter_fd
        self.prog_fd: int | None = prog_fd
        self._bpf = _Bpf()

    @classmethod
    def create(cls, workers: int, max_sessions: int = 65536,
               max_pending: int = 16384) -> SessionSteering:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        bpf = _Bpf()
        fds: list[int] = []
        try:
            for kind, key, size, what in (
                    (_BPF_MAP_TYPE_HASH, _SID.size, max_sessions, "sessions"),
                    (_BPF_MAP_TYPE_LRU_HASH, _SID.size, max_pending, "handshakes"),
                    (_BPF_MAP_TYPE_ARRAY, 4, 1, "counter")):
                attr = struct.pack("<IIIII", kind, key, _VALUE.size, size, 0)
                fds.append(bpf.call(_BPF_MAP_CREATE, attr,
                                    f"cannot create the UDP steering map ({what})"))
            prog_fd = _load_program(bpf, _session_program(workers, *fds),
                                    "cannot load the UDP steering program")
        except SteeringError:
            for fd in fds:
                os.close(fd)
            raise
        for fd in (*fds, prog_fd):
            os.set_inheritable(fd, False)
        return cls(workers, fds[0], fds[1], fds[2], prog_fd)

    def attach(self, sock: socket.socket) -> None:
        """Make the program choose the socket of the group `sock` belongs to."""
        assert self.prog_fd is not None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, self.prog_fd)
        except OSError as exc:
            raise SteeringError(
                exc.errno or errno.EIO,
                f"cannot attach the UDP steering program: {exc.strerror}") from None

    def pin(self, session_id: bytes, worker: int) -> None:
        """The client session `session_id` lives on `worker` (its handshake completed)."""
        key = ctypes.create_string_buffer(_SID.pack(session_id), _SID.size)
        value = ctypes.create_string_buffer(_VALUE.pack(worker), _VALUE.size)
        attr = struct.pack("<IIQQQ", self.pinned_fd, 0, ctypes.addressof(key),
                           ctypes.addressof(value), 0)
        self._bpf.call(_BPF_MAP_UPDATE_ELEM, attr, "cannot pin a session to its worker")

    def unpin(self, session_id: bytes) -> None:
        key = ctypes.create_string_buffer(_SID.pack(session_id), _SID.size)
        attr = struct.pack("<IIQ", self.pinned_fd, 0, ctypes.addressof(key))
        try:
            self._bpf.call(_BPF_MAP_DELETE_ELEM, attr, "cannot unpin a session")
        except SteeringError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def close(self) -> None:
        for fd in (self.pinned_fd, self.pending_fd, self.counter_fd, self.prog_fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.prog_fd = None
        self.pinned_fd = self.pending_fd = self.counter_fd = -1
