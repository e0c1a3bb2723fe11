"""Steering for a multi-worker server: which worker process sees which packet.

Two kernel programs keep every packet of one client on the worker that owns its session:

- **UDP** (`SessionSteering`): N sockets bound to one port with `SO_REUSEPORT` form one
  group; an eBPF program attached with `SO_ATTACH_REUSEPORT_EBPF` returns the index of the
  socket (= worker) for each datagram. The kernel's default is a hash of the 4-tuple, which
  sends a client to another worker when its source address changes (NAT rebinding, float).
  Ours looks at the payload instead: a P_DATA_V2 packet carries the 24-bit peer-id
  (worker = peer_id % N: worker i hands out only peer-ids i, i+N, ...); every control packet
  carries the client's 8-byte session id right after the opcode, in clear under every wrap:
  a session that exists is found by it in a map the supervisor writes (`pinned`), any other
  control packet goes to `hashed_worker` (first 4 bytes of the id % N). The program only
  reads maps: before a client proved it receives (the cookie), nothing in the kernel keeps
  anything for it. P_DATA_V1 (pre-2.4 clients, no peer-id) is steered as a control packet
  by its first bytes, which is meaningless: such clients need `--workers 1`.
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
    "hashed_worker",
]

SO_ATTACH_REUSEPORT_EBPF = 52
TUNSETSTEERINGEBPF = 0x800454E0  # _IOR('T', 224, int)


class SteeringError(OSError):
    """The kernel refused a steering program or map (one line, with errno)."""


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


# -- eBPF: the reuseport group ---------------------------------------------------------

_BPF_MAP_TYPE_HASH = 1
_BPF_MAP_GET_NEXT_KEY = 4
_MOD64_K, _AND64_K = 0x97, 0x57
_LD_ABS_W = 0x20
_P_DATA_V2 = 9
_SID = struct.Struct("8s")


def hashed_worker(session_id: bytes, workers: int) -> int:
    """The worker of a control packet whose client session id is not pinned: the first 4
    bytes of the id (network order) % N, a stateless function of what the packet carries."""
    return int.from_bytes(session_id[:4], "big") % workers


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


def _session_program(workers: int, pinned_fd: int) -> bytes:
    """eBPF for the reuseport group: the socket (= worker) of a UDP payload.

    - P_DATA_V2: peer_id % N (worker i hands out the peer-ids i, i + N, ...);
    - a control packet: its client session id (bytes 1..8) in `pinned` (a session that
      exists, written by the supervisor once a worker made it after the cookie proof), else
      `hashed_worker`: the first 4 bytes of the id % N.
    The program only reads: nothing a packet carries writes a map, so a flood of resets
    costs a lookup each and leaves nothing behind in the kernel.
    Stack: fp-8 the session id.
    """
    sid = -8
    return _assemble([
        (_MOV64_X, _R6, _R1, 0, 0),                    # r6 = skb (LD_ABS needs it there)
        (_LD_ABS_B, 0, 0, 0, 0),                       # r0 = opcode << 3 | key_id
        (_RSH64_K, _R0, 0, 0, 3),
        (_JEQ_K6, _R0, 0, "data", _P_DATA_V2),
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
        (_LD_ABS_W, 0, 0, 0, 1),                       # r0 = session id[0:4], network order
        (_MOD64_K, _R0, 0, 0, workers),
        (_EXIT, 0, 0, 0, 0),
        ("label", "found"),
        (_LDX_W, _R0, _R0, 0, 0),
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
    """The reuseport group's program and its one map: client session id -> worker.

    Before a client proved it receives at its address (the stateless cookie exchange) its
    control packets go to `hashed_worker(session id)`, which keeps no state anywhere; which
    worker answered the reset does not matter, since all workers share one cookie key. Once
    a worker verified the cookie, the supervisor picks the session's worker (the one with the
    fewest sessions) and pins the session id there in `pinned`, before the session exists;
    the pin is removed when the session ends. Only the supervisor writes the map, and nothing
    from the network can evict an entry. Data packets go by peer-id.
    """

    def __init__(self, workers: int, pinned_fd: int, prog_fd: int) -> None:
        self.workers = workers
        self.pinned_fd = pinned_fd
        self.prog_fd: int | None = prog_fd
        self._bpf = _Bpf()

    @classmethod
    def create(cls, workers: int, max_sessions: int = 65536) -> SessionSteering:
        """`max_sessions`: the pinned map's size; a pin beyond it fails (E2BIG). The map is
        not preallocated (BPF_F_NO_PREALLOC): it takes memory as sessions exist."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        bpf = _Bpf()
        attr = struct.pack("<IIIII", _BPF_MAP_TYPE_HASH, _SID.size, _VALUE.size, max_sessions,
                           _BPF_F_NO_PREALLOC)
        pinned_fd = bpf.call(_BPF_MAP_CREATE, attr,
                             "cannot create the UDP steering map (sessions)")
        try:
            prog_fd = _load_program(bpf, _session_program(workers, pinned_fd),
                                    "cannot load the UDP steering program")
        except SteeringError:
            os.close(pinned_fd)
            raise
        for fd in (pinned_fd, prog_fd):
            os.set_inheritable(fd, False)
        return cls(workers, pinned_fd, prog_fd)

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
        """The client session `session_id` lives on `worker`. SteeringError (E2BIG) when the
        map is full."""
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

    def pinned(self) -> list[bytes]:
        """The session ids in the map, read from the kernel (for tests and diagnostics)."""
        return map_keys(self._bpf, self.pinned_fd, _SID.size)

    def close(self) -> None:
        for fd in (self.pinned_fd, self.prog_fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.prog_fd = None
        self.pinned_fd = -1


def map_keys(bpf: _Bpf, map_fd: int, key_size: int) -> list[bytes]:
    """Every key of a hash map (BPF_MAP_GET_NEXT_KEY from no key until ENOENT)."""
    keys: list[bytes] = []
    current = ctypes.create_string_buffer(key_size)
    following = ctypes.create_string_buffer(key_size)
    first = True
    while True:
        attr = struct.pack("<IIQQ", map_fd, 0, 0 if first else ctypes.addressof(current),
                           ctypes.addressof(following))
        try:
            bpf.call(_BPF_MAP_GET_NEXT_KEY, attr, "cannot list a steering map")
        except SteeringError as exc:
            if exc.errno == errno.ENOENT:
                return keys
            raise
        keys.append(following.raw)
        ctypes.memmove(current, following, key_size)
        first = False
