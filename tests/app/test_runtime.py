"""`Runtime` (tunnel/app/runtime.py), the part both roles share, run for real: a server
runtime on a loopback UDP socket, its real Driver and Server, an in-process packet device in
place of the TUN (the only part swapped, so no root is needed), real signals sent to this
process, a real status file and a real `down` script. What is checked is what an operator sees:
stock's log lines per signal, the exit code, the restart kind, the status file written last
before the goodbye, the socket closed, the cleanups and `down` run (with stock's `signal`
variable) or skipped under persist-tun on SIGUSR1, and a failure at start-up as one line."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tunnel.app.privileges import Target
from tunnel.app.runtime import StartupError, describe_error, management_title, version_line
from tunnel.app.serve import ServerRuntime
from tunnel.config import TunnelConfig, parse_config
from tunnel.io.device import MemoryDevice
from tunnel.io.tun import TunDevice
from tunnel.pki import generate_pki_in_memory

NO_TARGET = Target(None, None, None, None)
SERVER = ("proto udp\nlocal 127.0.0.1\nport {port}\ndev tun\ntopology subnet\n"
          "server 10.8.0.0 255.255.255.0\nca ca.crt\ncert server.crt\nkey server.key\n"
          "dh none\nverb 3\n")


@pytest.fixture(scope="module")
def pems() -> dict[str, bytes]:
    return generate_pki_in_memory()


@pytest.fixture
def workdir(tmp_path: Path, pems: dict[str, bytes]) -> Path:
    for name in ("ca.crt", "server.crt", "server.key"):
        (tmp_path / name).write_bytes(pems[name])
    return tmp_path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _config(workdir: Path, extra: str = "", port: int | None = None) -> TunnelConfig:
    text = SERVER.format(port=port or _free_port()) + extra
    return parse_config(text, source="test.conf", base_dir=workdir)


class MemoryServer(ServerRuntime):
    """ServerRuntime with an in-process device: `up` runs with the device's variables (as the
    real open_device does), so `down` has them at shutdown."""

    def open_device(self) -> TunDevice:
        self.memory_device = MemoryDevice("mem0")
        self.run_up(self.scripts.device_env("mem0", self.cfg.tun_mtu, "10.8.0.1",
                                            "255.255.255.0", "init"))
        return self.memory_device  # type: ignore[return-value]  # a PacketDevice, as TUN


def _run(runtime: MemoryServer, during: Callable[[MemoryServer], None]) -> int:
    """Run until the driver is up, call `during` (which signals us), return the exit code."""

    async def main() -> int:
        task = asyncio.ensure_future(runtime.run())
        for _ in range(400):
            if (runtime.driver is not None and runtime.loop is not None) or task.done():
                break
            await asyncio.sleep(0.01)
        assert not task.done(), task.result()
        await asyncio.sleep(0.05)  # started() ran
        during(runtime)
        return await asyncio.wait_for(task, 10)

    return asyncio.run(main())


def _kill(signum: int) -> Callable[[MemoryServer], None]:
    return lambda _runtime: os.kill(os.getpid(), signum)


def _logger(name: str) -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger(f"test-runtime-{name}")
    log.handlers[:] = [Keep()]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log, lines


def _down_script(workdir: Path) -> tuple[Path, Path]:
    """A `down` script that records its signal variable and arguments."""
    record = workdir / "down.txt"
    script = workdir / "down.sh"
    script.write_text(f'#!/bin/sh\necho "$script_type $signal $1" >> {record}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


@pytest.mark.parametrize(("signum", "text", "restart"), [
    (signal.SIGTERM, "SIGTERM[hard,] received, process exiting", None),
    (signal.SIGINT, "SIGINT[hard,] received, process exiting", None),
    (signal.SIGHUP, "SIGHUP[hard,] received, process restarting", "SIGHUP"),
    (signal.SIGUSR1, "SIGUSR1[soft,] received, process restarting", "SIGUSR1"),
])
def test_a_signal_ends_the_run_the_way_stock_says(workdir: Path, signum: int, text: str,
                                                   restart: str | None) -> None:
    script, record = _down_script(workdir)
    status = workdir / "status.log"
    cfg = _config(workdir, f"status {status} 60\nstatus-version 2\nscript-security 2\n"
                           f"down {script}\n")
    log, lines = _logger(f"sig{signum}")
    runtime = MemoryServer(cfg, log, NO_TARGET)
    cleaned: list[str] = []

    def failing_cleanup() -> None:
        cleaned.append("first")
        raise RuntimeError("a cleanup that fails")

    runtime.cleanups += [failing_cleanup, lambda: cleaned.append("second")]
    sock_holder: list[socket.socket] = []

    def during(rt: MemoryServer) -> None:
        assert rt.sock is not None
        sock_holder.append(rt.sock)
        os.kill(os.getpid(), signum)

    assert _run(runtime, during) == 0
    assert text in lines and "Initialization Sequence Completed" in lines
    assert runtime.restart == restart and runtime.shutting_down
    assert sock_holder[0].fileno() == -1  # the link is closed
    assert cleaned == ["first", "second"]  # one failing cleanup does not skip the next
    assert any("while cleaning up" in line for line in lines)
    written = status.read_text()  # the last write at shutdown, complete
    assert written.startswith("TITLE,") and written.rstrip().endswith("END")
    # down ran once with stock's signal variable (argv: the device name first).
    assert record.read_text() == f"down {(restart or 'SIGTERM').lower()} mem0\n"


def test_sigusr1_keeps_the_device_under_persist_tun_and_skips_down(workdir: Path) -> None:
    script, record = _down_script(workdir)
    cfg = _config(workdir, f"persist-tun\nscript-security 2\ndown {script}\n")
    log, _lines = _logger("persist")
    runtime = MemoryServer(cfg, log, NO_TARGET)
    assert _run(runtime, _kill(signal.SIGUSR1)) == 0
    assert runtime.restart == "SIGUSR1" and not record.exists()
    # SIGHUP re-reads the config: the device goes and down runs, persist-tun or not.
    runtime = MemoryServer(cfg, log, NO_TARGET)
    assert _run(runtime, _kill(signal.SIGHUP)) == 0
    assert record.read_text() == "down sighup mem0\n"


def test_sigusr2_logs_the_status_and_the_run_goes_on(workdir: Path) -> None:
    log, lines = _logger("usr2")
    runtime = MemoryServer(_config(workdir), log, NO_TARGET)

    def during(rt: MemoryServer) -> None:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert rt.loop is not None
        rt.loop.call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)

    assert _run(runtime, during) == 0
    assert any(line.startswith("TITLE") for line in lines), lines
    assert "SIGTERM[hard,] received, process exiting" in lines
    # the status print came before the exit, not instead of it
    assert next(i for i, x in enumerate(lines) if x.startswith("TITLE")) < lines.index(
        "SIGTERM[hard,] received, process exiting")


def test_the_start_up_heap_is_frozen_once_the_server_runs(workdir: Path) -> None:
    log, _lines = _logger("freeze")
    runtime = MemoryServer(_config(workdir), log, NO_TARGET)
    gc.unfreeze()
    frozen: list[int] = []

    def during(_rt: MemoryServer) -> None:
        frozen.append(gc.get_freeze_count())
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        assert _run(runtime, during) == 0
    finally:
        gc.unfreeze()  # the rest of the test session collects as before
    assert frozen and frozen[0] > 1000, frozen


def test_an_exception_escaping_a_callback_is_counted_and_the_loop_goes_on(
        workdir: Path) -> None:
    log, lines = _logger("fault")
    runtime = MemoryServer(_config(workdir), log, NO_TARGET)
    seen: dict[str, int] = {}

    def during(rt: MemoryServer) -> None:
        assert rt.loop is not None and rt.driver is not None
        before = rt.driver.stats.errors

        def bug() -> None:
            raise ValueError("a bug in some callback")

        def check() -> None:
            assert rt.driver is not None
            seen["errors"] = rt.driver.stats.errors - before
            os.kill(os.getpid(), signal.SIGTERM)

        rt.loop.call_soon(bug)
        rt.loop.call_later(0.1, check)

    assert _run(runtime, during) == 0
    assert seen == {"errors": 1}
    assert "SIGTERM[hard,] received, process exiting" in lines


def test_spawned_tasks_are_cancelled_at_shutdown_and_stop_keeps_the_first_code(
        workdir: Path) -> None:
    log, _lines = _logger("tasks")
    runtime = MemoryServer(_config(workdir), log, NO_TARGET)
    states: list[str] = []

    async def background() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            states.append("cancelled")
            raise

    def during(rt: MemoryServer) -> None:
        rt.spawn(background())
        assert rt.loop is not None
        rt.loop.call_later(0.05, rt.stop, 3)
        rt.loop.call_later(0.06, rt.stop, 4)  # too late: the first request wins

    assert _run(runtime, during) == 3
    assert states == ["cancelled"]


def test_a_failure_at_start_up_is_one_line(workdir: Path) -> None:
    log, _lines = _logger("startup")
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    try:
        port = holder.getsockname()[1]
        cfg = _config(workdir, port=port)
        runtime = MemoryServer(cfg, log, NO_TARGET)
        with pytest.raises(StartupError) as caught:
            asyncio.run(runtime.run())
        assert "\n" not in str(caught.value) and "Errno" not in str(caught.value)
        assert "in use" in str(caught.value).lower()
    finally:
        holder.close()
    # An unwritable status file names the config line.
    cfg = _config(workdir, f"status {workdir / 'missing' / 'status.log'}\n")
    with pytest.raises(StartupError, match=r"test\.conf:\d+: cannot open the status file"):
        asyncio.run(MemoryServer(cfg, log, NO_TARGET).run())


def test_describe_error_and_the_titles() -> None:
    assert describe_error(FileNotFoundError(2, "No such file or directory", "/x/y")) == \
        "No such file or directory: /x/y"
    assert describe_error(OSError(98, "Address already in use")) == "Address already in use"
    assert describe_error(ValueError("two\n  lines")) == "two lines"
    assert describe_error(KeyError()) == "KeyError"
    assert version_line().startswith("OpenVPN-compatible tunnel ")
    # openvpn-monitor reads the word after "OpenVPN" as the version it talks to.
    words = management_title().split()
    assert words[0] == "OpenVPN" and words[1] == "2.6.0"
