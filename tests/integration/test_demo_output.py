"""`tunnel demo` output: a live progress line on a terminal (a real pty here), a clean log
of whole lines when stderr is a pipe."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time

from tests.netns import REPO_ROOT

PACKETS = 20_000
ARGV = [sys.executable, "-m", "tunnel", "demo", "--packets", str(PACKETS)]


def test_demo_off_a_terminal_is_a_clean_log() -> None:
    result = subprocess.run(ARGV, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for stream in (result.stdout, result.stderr):
        assert "\r" not in stream and "\x1b" not in stream, repr(stream)
    assert result.stderr.startswith("tunnel demo: TLS handshake on 127.0.0.1, then 20000 ")
    assert "result            OK" in result.stdout


def _run_on_a_pty(argv: list[str], timeout: float) -> tuple[int, str]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            cwd=REPO_ROOT, env={**os.environ, "TERM": "xterm"})
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the pty
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(30), b"".join(chunks).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


def test_demo_on_a_terminal_draws_a_live_progress_line() -> None:
    code, out = _run_on_a_pty(ARGV, timeout=120)
    assert code == 0, out
    # Redrawn in place (carriage return / cursor control), with the counts each way, the rate
    # and the elapsed time; the last drawing shows every packet.
    assert "\r" in out or "\x1b[" in out, repr(out[-500:])
    assert f"to server {PACKETS} to client {PACKETS} / {PACKETS}" in out, out[-2000:]
    assert "Mbit/s" in out and "0:00:" in out, out[-2000:]
    assert "result            OK" in out
