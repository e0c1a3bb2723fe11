"""scripts/lab end to end: it brings a tunnel up, measures it, and leaves nothing behind.

The script runs our server and client (the interpreter running pytest, via PYTHON) in two
namespaces it creates itself; these tests only read what it prints and check afterwards that
its namespaces and temp directory are gone, after a normal run and after Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.netns import REPO_ROOT

# The lab itself checks for ip, ss, iperf3 and ping and stops if one is missing.
pytestmark = [pytest.mark.root, pytest.mark.ip, pytest.mark.iperf3, pytest.mark.ping]

LAB = REPO_ROOT / "scripts" / "lab"
NAMESPACES = re.compile(r"namespaces (\S+) \(\S+\) and (\S+) \(")
WORKDIR = re.compile(r"logs: (/tmp/tunnel-lab\.\w+)/server\.log")


def _env() -> dict[str, str]:
    # The lab must use this interpreter (sudo's PATH could find one without our dependencies).
    return {**os.environ, "PYTHON": sys.executable}


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _lab_namespaces(output: str) -> tuple[str, str]:
    match = NAMESPACES.search(output)
    assert match, f"the lab did not say which namespaces it made:\n{output}"
    return match.group(1), match.group(2)


def test_lab_runs_and_cleans_up() -> None:
    result = subprocess.run([str(LAB), "--seconds", "2"], capture_output=True, text=True,
                            timeout=120, env=_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "tunnel: ours server <-> ours client, AES-256-GCM" in result.stdout, output
    assert re.search(r"ping client -> server \(\S+\): 5/5 received, avg [\d.]+ ms",
                     result.stdout), output
    assert re.search(r"ping server -> client \(\S+\): 5/5 received, avg [\d.]+ ms",
                     result.stdout), output
    rate = re.search(r"iperf3 TCP client -> server, 2 s: ([\d.]+) Mbit/s", result.stdout)
    assert rate and float(rate.group(1)) > 0, output
    print(f"\nscripts/lab --seconds 2: {rate.group(1)} Mbit/s")
    assert not set(_lab_namespaces(output)) & _netns_names(), output
    assert "cleaned up" in result.stderr


def test_lab_keep_until_ctrl_c_then_cleans_up(tmp_path: Path) -> None:
    log_path = tmp_path / "lab.log"
    with open(log_path, "w") as log:
        # Not start_new_session: SIGINT goes to the script alone, as a terminal's Ctrl-C
        # would reach it (its children are stopped by the script's own trap).
        lab = subprocess.Popen([str(LAB), "--seconds", "1", "--keep"], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.monotonic() + 90
        while "until Ctrl-C" not in log_path.read_text() and lab.poll() is None:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        output = log_path.read_text()
        assert lab.poll() is None, f"the lab exited instead of waiting:\n{output}"
        namespaces = set(_lab_namespaces(output))
        assert namespaces <= _netns_names(), "--keep must leave the namespaces up"
        workdir = WORKDIR.search(output)
        assert workdir and Path(workdir.group(1)).is_dir(), output

        lab.send_signal(signal.SIGINT)
        assert lab.wait(30) == 130, log_path.read_text()
    finally:
        if lab.poll() is None:  # only on a failed assertion above: no stray lab survives us
            lab.terminate()  # its TERM trap tears down; SIGKILL only if that hangs
            try:
                lab.wait(30)
            except subprocess.TimeoutExpired:
                lab.kill()
                lab.wait(10)
    output = log_path.read_text()
    assert "interrupted" in output and "cleaned up" in output, output
    assert not namespaces & _netns_names(), output
    assert not Path(workdir.group(1)).exists(), output


def test_lab_uses_the_project_venv_and_says_each_step() -> None:
    # No PYTHON: the lab brings up (or reuses) the repo's .venv itself, as `make` does.
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    result = subprocess.run([str(LAB), "--seconds", "1"], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = re.findall(r"step (\d)/6: ", result.stderr)
    assert steps == ["1", "2", "3", "4", "5", "6"], result.stderr
    assert f"step 1/6: the project's Python environment ({REPO_ROOT}/.venv)" in result.stderr
    assert (REPO_ROOT / ".venv" / ".installed").is_file()


@pytest.mark.setpriv
def test_lab_help_needs_no_root() -> None:
    # A copy nobody can reach: the checkout may sit under a directory only root may enter
    # (/root, a mktemp -d), which says nothing about the script.
    directory = Path(tempfile.mkdtemp(prefix="lab-help."))
    try:
        directory.chmod(0o755)
        lab = directory / "lab"
        shutil.copyfile(LAB, lab)
        lab.chmod(0o755)
        result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                                 "--clear-groups", str(lab), "--help"],
                                capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("scripts/lab -- ") and "--stock-server" in result.stdout
