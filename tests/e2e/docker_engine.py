"""A Docker engine for a test: the one already running, or a dockerd of our own, stopped after.

    with docker_engine(workdir) as engine:
        engine.docker("info")

Our own dockerd keeps everything under a mktemp directory (data root, exec root, socket, pid
file, log), so it never touches a system engine's images or state and its cleanup is `rm -rf`.
It runs with `--iptables=false --bridge=none`: the compose networks are bridges between
containers only, and builds use `--network host`, so it adds no rule to the host's firewall.
On exit it is stopped by the PID we started (SIGTERM, then SIGKILL of its process group), any
mount it left under the directory is unmounted, and the directory removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.tools import which

START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0


@dataclass
class Engine:
    """How to reach the engine: the environment for docker / docker compose."""

    env: dict[str, str]
    ours: bool  # we started it (so images we add vanish with it)
    log: Path | None = None
    docker_cli: str = field(default_factory=lambda: which("docker") or "docker")

    def docker(self, *args: str, timeout: float = 120, check: bool = True,
               stdin: int | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.docker_cli, *args], capture_output=True, text=True,
                                timeout=timeout, env=self.env, stdin=stdin)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
        return result

    def answers(self) -> bool:
        try:
            return self.docker("info", timeout=20, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory) + "/"
    points = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)  # deepest first


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # dockerd stops its containers and its containerd
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
    # Its process group (we made it a session leader): containerd and anything it left.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(10)


@contextlib.contextmanager
def docker_engine() -> Iterator[Engine]:
    """The running engine if one answers, else a dockerd of our own for the block."""
    existing = Engine(env=dict(os.environ), ours=False)
    if existing.answers():
        yield existing
        return
    dockerd = which("dockerd")
    if dockerd is None:
        raise RuntimeError("no Docker engine answers and dockerd is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="tunnel-dockerd."))
    log = workdir / "dockerd.log"
    sock = workdir / "docker.sock"
    engine = Engine(env={**os.environ, "DOCKER_HOST": f"unix://{sock}"}, ours=True, log=log)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [dockerd, "--data-root", str(workdir / "data"), "--exec-root",
                 str(workdir / "exec"), "--pidfile", str(workdir / "dockerd.pid"),
                 "--host", f"unix://{sock}", "--iptables=false", "--ip6tables=false",
                 "--bridge=none"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not (sock.exists() and engine.answers()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not come up:\n{engine.log_tail()}")
            time.sleep(0.5)
        yield engine
    finally:
        if proc is not None:
            _stop(proc)
        for point in _mounts_under(workdir):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
