"""A management-interface client for tests, written the way GUI/admin-panel parsers read it.

Stock's protocol: every line ends with CRLF; a line starting with '>' is a real-time
notification and may arrive at any moment (between the lines of a reply, too); a reply is
either one "SUCCESS: ..."/"ERROR: ..." line or, for the listing commands, lines ended by "END".
`shape()` reduces a reply to what a parser depends on (record types, field counts, fixed
words), so stock's replies and ours can be compared without their varying values.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

MULTILINE = ("help", "version", "status", "state", "log", "echo")
READ_TIMEOUT = 10.0


class MgmtError(AssertionError):
    pass


@dataclass
class MgmtClient:
    sock: socket.socket
    buffer: bytes = b""
    notifications: list[str] = field(default_factory=list)
    raw: bytes = b""  # everything received, for framing checks

    @classmethod
    def connect(cls, address: str | tuple[str, int], timeout: float = 10.0) -> MgmtClient:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(READ_TIMEOUT)
            try:
                sock.connect(address)
                return cls(sock)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MgmtClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode() + b"\n"
        self.sock.sendall(data)

    def read_line(self, timeout: float = READ_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MgmtError(f"no complete line in {timeout} s; have {self.buffer!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MgmtError(f"connection closed; have {self.buffer!r}")
            self.raw += chunk
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def read_prompt(self, text: str, timeout: float = READ_TIMEOUT) -> None:
        """A prompt without CRLF, such as "ENTER PASSWORD:"."""
        deadline = time.monotonic() + timeout
        while not self.buffer.startswith(text.encode()):
            if time.monotonic() > deadline:
                raise MgmtError(f"no {text!r}; have {self.buffer!r}")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MgmtError(f"connection closed; have {self.buffer!r}")
            self.raw += chunk
            self.buffer += chunk
        self.buffer = self.buffer[len(text):]

    def reply_line(self, timeout: float = READ_TIMEOUT) -> str:
        """The next line that is not a notification (notifications are kept aside)."""
        while True:
            line = self.read_line(timeout)
            if line.startswith(">"):
                self.notifications.append(line)
                continue
            return line

    @staticmethod
    def reply_parts(line: str) -> list[str]:
        """What a command answers: "line" (SUCCESS/ERROR) or "block" (lines up to END)."""
        words = line.split()
        if not words:
            return []
        cmd, params = words[0], words[1:3]
        if cmd in ("help", "status") or (cmd == "version" and not params):
            return ["block"]
        if cmd in ("state", "log", "echo"):
            if cmd == "state" and not params:
                return ["block"]
            if not params:
                return ["line"]
            return ["line" if p in ("on", "off") else "block" for p in params]
        return ["line"]

    def command(self, line: str, timeout: float = READ_TIMEOUT) -> list[str]:
        """Send one command, return its reply lines (a block's lines include END)."""
        self.send(line)
        lines: list[str] = []
        for part in self.reply_parts(line):
            first = self.reply_line(timeout)
            lines.append(first)
            if first.startswith("ERROR:"):
                break
            if part == "block":
                while lines[-1] != "END":
                    lines.append(self.reply_line(timeout))
        return lines

    def next_notification(self, timeout: float = READ_TIMEOUT) -> str:
        """The next notification: one kept aside earlier, or the next line read."""
        if self.notifications:
            return self.notifications.pop(0)
        line = self.read_line(timeout)
        if not line.startswith(">"):
            raise MgmtError(f"expected a notification, got {line!r}")
        return line

    def take_block(self, prefix: str, end: str, timeout: float = READ_TIMEOUT) -> list[str]:
        """A notification starting with `prefix` and the lines after it up to `end`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, seen in enumerate(self.notifications):
                if not seen.startswith(prefix):
                    continue
                for j in range(i, len(self.notifications)):
                    if self.notifications[j] == end:
                        block = self.notifications[i:j + 1]
                        del self.notifications[i:j + 1]
                        return block
            if time.monotonic() > deadline:
                raise MgmtError(f"no {prefix!r} block in {timeout} s; seen {self.notifications}")
            line = self.read_line(max(0.01, deadline - time.monotonic()))
            if not line.startswith(">"):
                raise MgmtError(f"unexpected line while waiting for {prefix!r}: {line!r}")
            self.notifications.append(line)

    def wait_notification(self, prefix: str, timeout: float = READ_TIMEOUT) -> str:
        for i, seen in enumerate(self.notifications):
            if seen.startswith(prefix):
                del self.notifications[i]
                return seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.read_line(max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line
            if line.startswith(">"):
                self.notifications.append(line)
            else:
                raise MgmtError(f"unexpected line while waiting for {prefix!r}: {line!r}")
        raise MgmtError(f"no {prefix!r} in {timeout} s; seen {self.notifications}")


_NUMBER = re.compile(r"\d+")


def field_shape(value: str) -> str:
    """A field as its kind: empty, number, IPv4[:port], or the word itself when fixed text."""
    if value == "":
        return ""
    if re.fullmatch(r"-?\d+", value):
        return "N"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+(:\d+)?", value):
        return "IP" + (":P" if ":" in value else "")
    if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", value):
        return "TIME"
    return "S"


def line_shape(line: str, sep: str = ",") -> str:
    """A reply line reduced to what a parser relies on."""
    if line.startswith(("SUCCESS:", "ERROR:")):
        # The fixed words stay; numbers, names and addresses inside become placeholders.
        text = re.sub(r"'[^']*'", "'X'", line)
        text = re.sub(r"\d+\.\d+\.\d+\.\d+", "IP", text)
        return _NUMBER.sub("N", text)
    if line == "END":
        return line
    fields = line.split(sep)
    if fields[0].isupper() and fields[0].replace("_", "").isalpha():
        # A record: its type and the kinds of its fields (HEADER rows are kept verbatim).
        if fields[0] == "HEADER" or fields[0] == "TITLE":
            return line if fields[0] == "HEADER" else "TITLE,S"
        return sep.join([fields[0], *(field_shape(f) for f in fields[1:])])
    return sep.join(field_shape(f) for f in fields)
