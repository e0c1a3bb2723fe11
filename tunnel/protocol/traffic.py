"""Byte, datagram and refused-packet counters: per session (the whole connection, across its
keys) and per endpoint (everything on the link, attributed or not).

OpenVPN's status file, `bytecount` and our metrics report bytes per client for the whole
connection, while a data key's own counters vanish with it at every renegotiation; so the
server counts what passes for each client into its `Session.traffic` and everything into
`Server.traffic`. A client has one peer: it counts its totals only (`Client.traffic`, across
reconnects). Plain integer fields: one attribute add per packet, no allocation.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Traffic"]


@dataclass(slots=True)
class Traffic:
    """Bytes in each direction: link = UDP/TCP payloads, tun = cleartext IP packets."""

    link_rx: int = 0
    link_tx: int = 0
    tun_rx: int = 0  # read from the device (to be sent)
    tun_tx: int = 0  # written to the device (received)
    link_rx_packets: int = 0  # datagrams (the metrics endpoint's packet counters)
    link_tx_packets: int = 0
    # Data packets refused for this client (per session; across its keys, which come and go
    # with renegotiations): the tag did not verify / authentic but refused by the replay window.
    auth_drops: int = 0
    replay_drops: int = 0
