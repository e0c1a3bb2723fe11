"""What a driver counts (status, metrics): its own module, so the driver's helpers can
keep the same counters without importing the driver."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class DriverStats:
    udp_rx: int = 0
    udp_tx: int = 0
    udp_tx_dropped: int = 0
    tun_rx: int = 0
    tun_tx: int = 0
    tun_tx_dropped: int = 0
    no_route: int = 0
    # Inputs dropped here before the protocol saw them: empty datagrams (and empty packets
    # from the device), datagrams larger than any we accept, truncated reads.
    malformed: int = 0
    # Exceptions caught inside a callback (a bug, logged with its traceback; survived).
    errors: int = 0
