"""What a batch of datagrams from the link saw beyond data: bits of its `kinds` result.

Its own module because both batch readers use them, the per-datagram one
(tunnel/io/datapath.py) and the GRO-run one (tunnel/io/gro_rows.py), and datapath takes
gro_rows' run opener: with the bits in either, the two would import each other.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CONTROL", "REFUSED"]

CONTROL: Final = 1  # a control, ping or OCC packet (or a fault): state that needs servicing
REFUSED: Final = 2  # a dropped datagram: its (rate-limited) PacketDropped event waits
