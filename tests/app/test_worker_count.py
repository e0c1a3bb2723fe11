"""How many workers a server runs: `--workers N`, or by default the cores where the config
allows it; a config that needs one process gets one (said in the log) or, asked for more, a
clear error."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tunnel.app.runtime import StartupError
from tunnel.app.workers import resolve_workers, unsupported_with_workers
from tunnel.config import load_config
from tunnel.pki import generate_pki


def server_conf(tmp_path: Path, extra: str = "") -> Path:
    generate_pki(tmp_path / "pki", server_cn="server", client_cns=["client"], days=2)
    pki = tmp_path / "pki"
    path = tmp_path / "server.conf"
    path.write_text(f"port 1194\ndev tun\nserver 10.99.0.0 255.255.255.0\nca {pki}/ca.crt\n"
                    f"cert {pki}/server.crt\nkey {pki}/server.key\ndh none\n{extra}")
    return path


@pytest.mark.parametrize(("extra", "why"), [
    ("proto tcp-server\n", "proto tcp"),
    ("management 127.0.0.1 7505\nmanagement-client-auth\n", "management-client-auth"),
    ("management 127.0.0.1 7505\nmanagement-up-down\n", "management-up-down"),
    ("management 127.0.0.1 7505\nmanagement-query-passwords\n", "management-query-passwords"),
    ("client-to-client\n", "client-to-client"),
])
def test_configs_that_need_one_process(tmp_path: Path, extra: str, why: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(str(server_conf(tmp_path, extra)))
    reason = unsupported_with_workers(cfg)
    assert reason is not None and reason.startswith(why)
    log = logging.getLogger("test-workers")
    with caplog.at_level(logging.INFO, logger="test-workers"):
        assert resolve_workers(cfg, None, log) == 1
    if len(os.sched_getaffinity(0)) > 1:
        assert "one worker process: " + why in caplog.text
    with pytest.raises(StartupError, match="--workers 3: not possible with " + why):
        resolve_workers(cfg, 3, log)
    assert resolve_workers(cfg, 1, log) == 1


def test_udp_config_takes_what_is_asked(tmp_path: Path) -> None:
    cfg = load_config(str(server_conf(tmp_path)))
    assert unsupported_with_workers(cfg) is None
    # The management interface runs in the supervisor (workers_host.py).
    (tmp_path / "m").mkdir()
    with_management = load_config(str(server_conf(
        tmp_path / "m", "management 127.0.0.1 7505\nmanagement-hold\n")))
    assert unsupported_with_workers(with_management) is None
    assert unsupported_with_workers(cfg, metrics=True) is None  # served by the supervisor
    log = logging.getLogger("test-workers")
    assert resolve_workers(cfg, 4, log) == 4
    assert resolve_workers(cfg, 1, log) == 1
