"""Differential test: our TunnelConfig against stock OpenVPN's own option post-processing.

The stock binary prints its options after ``options_postprocess()`` at ``--verb 4``; we compare
what both sides derived (helper expansion of ``server``/``server-ipv6``/``keepalive``, the push
list and its order, pools, ping timers, mssfix defaults, local binding). ``--dev-node
/nonexistent`` makes it stop when it tries to open the tun device, and ``unshare -n`` gives it
a throwaway network namespace, so nothing on the host is touched.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.config.test_examples import WIRE_CLIENT, WIRE_SERVER
from tunnel.config import TunnelConfig, load_config

pytestmark = [pytest.mark.openvpn, pytest.mark.root, pytest.mark.unshare]

_DUMP_LINE = re.compile(r"^\S+ \S+ (?:us=\d+ )?\s+([a-z0-9_]+) = (.*)$")

SERVER_VARIANTS = [
    WIRE_SERVER,
    WIRE_SERVER.replace("10.8.0.0 255.255.255.0", "10.8.0.8 255.255.255.248"),
    WIRE_SERVER.replace("keepalive 10 60", "keepalive 5 30"),
    WIRE_SERVER + 'push "route 10.1.0.0 255.255.0.0"\nserver-ipv6 fd00:8::/64\n',
    WIRE_SERVER + "server-ipv6 fd00:8::/112\ntun-mtu 1400\n",
    WIRE_SERVER.replace("10.8.0.0 255.255.255.0", "10.8.0.0 255.255.255.0 nopool")
    + "ifconfig-pool 10.8.0.100 10.8.0.150\n",
]
CLIENT_VARIANTS = [
    WIRE_CLIENT,
    WIRE_CLIENT + "keepalive 10 60\n",
    WIRE_CLIENT.replace("nobind\n", "") + "mssfix 1450\n",
    WIRE_CLIENT.replace("nobind\n", "lport 5000\n") + "mssfix 0\n",
    WIRE_CLIENT + "tun-mtu 1400\nping 7\nping-restart 33\n",
]


def _stock_dump(conf: Path) -> dict[str, list[str]]:
    command = ["timeout", "2", "unshare", "-n", "openvpn", "--config", conf.name,
               "--verb", "4", "--dev-node", "/nonexistent"]  # fmt: skip
    result = subprocess.run(command, cwd=conf.parent, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert "Options error" not in output, output
    dump: dict[str, list[str]] = {}
    for line in output.splitlines():
        match = _DUMP_LINE.match(line)
        if match:
            dump.setdefault(match.group(1), []).append(match.group(2).strip("'"))
    assert "push_entry" in dump or "ping_send_timeout" in dump, output
    return dump


def _ours_in_stock_terms(cfg: TunnelConfig) -> dict[str, list[str]]:
    ping_rec = cfg.ping_restart or cfg.ping_exit
    view = {
        "ping_send_timeout": [str(cfg.ping)],
        "ping_rec_timeout": [str(ping_rec)],
        "mssfix": [str(cfg.mssfix or 0)],
        "mssfix_fixed": ["ENABLED" if cfg.mssfix_mode == "fixed" else "DISABLED"],
        "tun_mtu": [str(cfg.tun_mtu)],
        "bind_local": ["ENABLED" if cfg.bind_local else "DISABLED"],
        "ncp_ciphers": [":".join(cfg.data_ciphers)],
    }
    if cfg.push_list:
        view["push_entry"] = cfg.push_list
    if cfg.ifconfig is not None:
        view["ifconfig_local"] = [str(cfg.ifconfig.ip)]
        view["ifconfig_remote_netmask"] = [str(cfg.ifconfig.netmask)]
    if cfg.pool is not None:
        view["ifconfig_pool_start"] = [str(cfg.pool.start)]
        view["ifconfig_pool_end"] = [str(cfg.pool.end)]
        view["ifconfig_pool_netmask"] = [str(cfg.pool.netmask)]
    if cfg.ifconfig_ipv6 is not None:
        view["ifconfig_ipv6_local"] = [str(cfg.ifconfig_ipv6.ip)]
        view["ifconfig_ipv6_netbits"] = [str(cfg.ifconfig_ipv6.network.prefixlen)]
        view["ifconfig_ipv6_remote"] = [str(cfg.ifconfig_ipv6_remote)]
    if cfg.pool_ipv6 is not None:
        view["ifconfig_ipv6_pool_base"] = [str(cfg.pool_ipv6.ip)]
    return view


@pytest.mark.parametrize("text", SERVER_VARIANTS + CLIENT_VARIANTS)
def test_stock_openvpn_derives_the_same_settings(pki_dir: Path, text: str) -> None:
    conf = pki_dir / "oracle.conf"
    conf.write_text(text)
    ours = _ours_in_stock_terms(load_config(conf))
    stock = _stock_dump(conf)
    assert {key: stock.get(key) for key in ours} == ours
