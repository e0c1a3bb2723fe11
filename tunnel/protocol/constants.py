"""Wire constants of OpenVPN 2.6 (UDP, TLS mode), in one place.

Every value is the stock one; the comment names where OpenVPN 2.6.14 defines it (all under
``src/openvpn/``). See ``/work/shared/protocol/OPENVPN-WIRE.md`` sections 1-3.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "CONTROL_OPCODES",
    "FAST_RETRANSMIT_ACKS",
    "HAND_WINDOW_DEFAULT",
    "IPV4_HEADER",
    "IPV4_UDP_OVERHEAD",
    "IPV6_HEADER",
    "IPV6_UDP_OVERHEAD",
    "KEY_ID_MASK",
    "MAX_ACKS_ACK_PACKET",
    "MAX_ACKS_PARSE",
    "MAX_ACKS_PIGGYBACK",
    "MAX_MSG_PID",
    "NO_PEER_ID",
    "OCC_EXIT",
    "OCC_MAGIC",
    "OCC_REPLY",
    "OCC_REQUEST",
    "OPCODE_SHIFT",
    "PACKET_ID_LEN",
    "PING_MAGIC",
    "P_FIRST_OPCODE",
    "P_LAST_OPCODE",
    "RECV_WINDOW",
    "SEND_WINDOW",
    "SESSION_ID_LEN",
    "TLS_MTU",
    "TLS_TIMEOUT_DEFAULT",
    "Opcode",
    "join_op",
    "split_op",
]


class Opcode(IntEnum):
    """Packet opcodes: the top 5 bits of a datagram's first byte (``ssl_pkt.h``)."""

    P_CONTROL_HARD_RESET_CLIENT_V1 = 1  # key-method 1: refused by 2.6
    P_CONTROL_HARD_RESET_SERVER_V1 = 2  # key-method 1: refused by 2.6
    P_CONTROL_SOFT_RESET_V1 = 3
    P_CONTROL_V1 = 4
    P_ACK_V1 = 5
    P_DATA_V1 = 6
    P_CONTROL_HARD_RESET_CLIENT_V2 = 7
    P_CONTROL_HARD_RESET_SERVER_V2 = 8
    P_DATA_V2 = 9
    P_CONTROL_HARD_RESET_CLIENT_V3 = 10  # tls-crypt-v2 only
    P_CONTROL_WKC_V1 = 11  # tls-crypt-v2 only


# The control opcodes 2.6 accepts: ssl_pkt.h P_FIRST_OPCODE..P_LAST_OPCODE, minus the two
# data opcodes that tls_pre_decrypt() diverts before its range check.
P_FIRST_OPCODE = 3
P_LAST_OPCODE = 11
CONTROL_OPCODES: frozenset[Opcode] = frozenset(
    op
    for op in Opcode
    if P_FIRST_OPCODE <= op <= P_LAST_OPCODE and op not in (Opcode.P_DATA_V1, Opcode.P_DATA_V2)
)

# First byte = (opcode << OPCODE_SHIFT) | key_id (ssl_pkt.h: P_KEY_ID_MASK, P_OPCODE_SHIFT).
KEY_ID_MASK = 0x07
OPCODE_SHIFT = 3

SESSION_ID_LEN = 8  # session_id.h: SID_SIZE
PACKET_ID_LEN = 4  # reliable.h: packet_id_type is a u32 on the wire
MAX_MSG_PID = 0xFFFFFFFF

# Control datagrams, IP and UDP headers included, stay at or under --tls-mtu
# (mtu.h: TLS_MTU_DEFAULT); the UDP payload limit is TLS_MTU minus these.
TLS_MTU = 1250
# Outer header sizes without options (RFC 791, 8200, 768, 9293), as stock counts them
# (socket.h: datagram_overhead); protocol/geometry.outer_overhead combines them per link.
IPV4_HEADER = 20
IPV6_HEADER = 40
UDP_HEADER = 8
TCP_HEADER = 20
IPV4_UDP_OVERHEAD = IPV4_HEADER + UDP_HEADER
IPV6_UDP_OVERHEAD = IPV6_HEADER + UDP_HEADER

# ACK limits. A receiver parses at most RELIABLE_ACK_SIZE ids (reliable.c: reliable_ack_parse());
# a piggybacked ACK block carries at most CONTROL_SEND_ACK_MAX (ssl.h); a dedicated P_ACK_V1
# carries up to RELIABLE_ACK_SIZE (ssl.c: tls_process_state()).
MAX_ACKS_PARSE = 8
MAX_ACKS_PIGGYBACK = 4
MAX_ACKS_ACK_PACKET = 8

# Reliability windows (ssl_pkt.h: TLS_RELIABLE_N_SEND_BUFFERS / TLS_RELIABLE_N_REC_BUFFERS).
SEND_WINDOW = 6
RECV_WINDOW = 12

TLS_TIMEOUT_DEFAULT = 2.0  # --tls-timeout (options.c: init_options())
FAST_RETRANSMIT_ACKS = 3  # reliable.h: N_ACK_RETRANSMIT
HAND_WINDOW_DEFAULT = 60.0  # --hand-window

# Magic payloads inside decrypted data packets (ping.c: ping_string, occ.c: occ_magic).
PING_MAGIC = bytes.fromhex("2a187bf3641eb4cb07ed2d0a981fc748")
OCC_MAGIC = bytes.fromhex("287f346bd4ef7a812d56b8d3afc5459c")
OCC_REQUEST = 0
OCC_REPLY = 1
OCC_EXIT = 6

# P_DATA_V2 peer-id meaning "none assigned" (openvpn.h: MAX_PEER_ID).
NO_PEER_ID = 0xFFFFFF


def split_op(first_byte: int) -> tuple[int, int]:
    """Split a datagram's first byte into ``(opcode, key_id)``; the opcode is a plain int."""
    return (first_byte & 0xFF) >> OPCODE_SHIFT, first_byte & KEY_ID_MASK


def join_op(opcode: int, key_id: int) -> int:
    """Build a datagram's first byte; raises ``ValueError`` if either field does not fit."""
    if not 0 <= opcode <= 0xFF >> OPCODE_SHIFT:
        raise ValueError(f"opcode {opcode} does not fit in 5 bits")
    if not 0 <= key_id <= KEY_ID_MASK:
        raise ValueError(f"key_id {key_id} does not fit in 3 bits")
    return (opcode << OPCODE_SHIFT) | key_id
