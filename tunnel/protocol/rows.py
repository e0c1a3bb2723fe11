"""The row batches the data channel seals and opens in one call (`DataKey.seal_rows`,
`DataKey.open_rows`): what the io layer's row layouts (tunnel/io/tso_rows.py for TSO
super-packets, tunnel/io/gro_rows.py for GRO runs) offer the protocol. Their own module so the
key base (datakey.py), the AEAD keys (datachannel.py) and the session can all name them without
importing each other."""

from __future__ import annotations

from typing import Protocol

__all__ = ["OpenRows", "ReceivedRows", "SealRows", "SegmentRows"]


class SealRows(Protocol):
    """Datagrams-to-be laid out as rows, sealed by `DataKey.seal_rows` in one batch (the
    segments of a TSO super-packet: tunnel/io/tso_rows.py). Each row's plaintext is already in
    place behind 24 bytes (op|peer-id, packet-id, tag slot) with 16 bytes of room behind it."""

    count: int

    def stamp(
        self, first_word: int, v2: bool, first_pid: int,
    ) -> tuple[list[memoryview], list[memoryview], list[memoryview]]:
        """Write every row's header word (V2) or op byte (V1) and its packet-id (from
        `first_pid`, one more per row); return the rows' plaintexts, `encrypt_into` outputs
        (plaintext + 16) and AADs."""
        ...

    def sealed(self) -> None:
        """Move each row's tag from behind its ciphertext to its slot."""
        ...


class OpenRows(Protocol):
    """Received datagrams of one size laid out as rows (a GRO run: tunnel/io/gro_rows.py),
    opened by `DataKey.open_rows` in one batch. Every row holds one datagram, placed so that
    its ciphertext starts at byte 24 whatever its opcode (P_DATA_V1 rows start at 3), with 16
    bytes of room behind it. All rows share the first byte (checked before)."""

    count: int
    first_byte: int  # op|key_id of every row

    def prepare(
        self, v2: bool,
    ) -> tuple[list[memoryview], list[memoryview], list[memoryview], list[int]]:
        """Put each row's tag behind its ciphertext; the rows' `decrypt_into` inputs
        (ciphertext + tag), outputs (the plaintext's place), AADs and packet-ids."""
        ...


class ReceivedRows(OpenRows, Protocol):
    """`OpenRows` as `Session.open_rows` takes them: after opening, what the session checks
    per packet (keepalive ping, OCC, mssfix) is asked of the rows at once."""

    segment: int  # every row's datagram size
    plain_size: int  # every row's plaintext length (after opening)

    def unusual(self) -> list[int]:
        """The rows whose plaintext is not plain IPv4 without a TCP SYN (a ping, OCC, IPv6,
        a SYN to clamp...): those the session looks at one by one."""
        ...

    def plain(self, index: int) -> memoryview:
        """Row `index`'s plaintext."""
        ...

    def header(self) -> int | None:
        """The first four bytes of every row's datagram as one big-endian word when all rows
        share them (P_DATA_V2 from one peer: op|key_id, peer-id); None otherwise or for
        P_DATA_V1 rows."""
        ...

    def foreign_sources(self, source: int) -> list[int]:
        """After opening: the rows whose plaintext is not an IPv4 packet from `source` (an
        address as an int), those the server's inner source check looks at one by one."""
        ...


class SegmentRows(SealRows, Protocol):
    """The segments of one TSO super-packet as `SealRows` (tunnel/io/tso_rows.py: SuperCut),
    what `Session.seal_segments` takes: one flow, so routed and checked once."""

    destination: int  # the IPv4 destination address, as an int
    plain_bytes: int  # the segments' total size

    @property
    def overhead(self) -> int:
        """Bytes sealing added to each row (valid after `stamp`)."""
        ...

    def fill(self) -> None:
        """Write the segments' plaintexts into the rows."""
        ...
