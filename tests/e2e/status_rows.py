"""The CLIENT_LIST rows of a status version 2 text (the status file, or `status 2` on the
management interface), as dicts keyed by the HEADER line's field names."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["client_list_rows"]


def client_list_rows(lines: Iterable[str]) -> list[dict[str, str]]:
    header: list[str] = []
    rows = []
    for line in lines:
        fields = line.split(",")
        if fields[:2] == ["HEADER", "CLIENT_LIST"]:
            header = fields[2:]
        elif fields[0] == "CLIENT_LIST" and header:
            rows.append(dict(zip(header, fields[1:], strict=False)))
    return rows
