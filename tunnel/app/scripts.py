"""Hook scripts with OpenVPN 2.6's arguments and environment (issue 11, item 5).

`script-security 2` (or 3) is needed for any user script, as in stock; below that a configured
hook is not run and one log line says so. A script runs with this process's environment plus
the variables stock sets for that hook (captured from a stock 2.6.14 run, see
tests/e2e/test_scripts_env.py), and blocks the tunnel while it runs, as stock's does:

* up, down: argv dev tun_mtu 0 ifconfig_local ifconfig_netmask init|restart; dev, dev_type,
  tun_mtu, ifconfig_local, ifconfig_netmask, script_context (down also: signal).
* route-pre-down: as down, before the routes are removed at exit.
* ipchange: argv "IP PORT" (one word), when the remote is authenticated on a connection;
  trusted_ip/port and common_name (client).
* route-up: no argv; as up, plus redirect_gateway, route_vpn_gateway, route_net_gateway,
  route_network_N / route_netmask_N / route_gateway_N.
* tls-verify: argv depth subject, deepest first; untrusted_ip/port, tls_id_N, tls_serial_N,
  tls_serial_hex_N, tls_digest_N, tls_digest_sha256_N, X509_N_<field>, common_name at depth 0.
* client-connect: argv a file the script may fill with ccd directives; the certificate's
  variables, trusted_ip/port, the client's IV_* peer-info, ifconfig_pool_remote_ip/netmask,
  time_ascii/time_unix. (No client_connect_deferred_file: deferred answers are not supported.)
* client-disconnect: as client-connect plus time_duration.
* learn-address: argv add|delete ADDRESS [CN]; as client-connect.

Always: config, daemon, daemon_log_redirect, daemon_pid, daemon_start_time, verb, script_type,
proto_1, local_port_1 (server) or remote_1 + remote_port_1 (client), every `setenv`, and the
pushed dhcp-options as foreign_option_N on a client. A non-zero exit of tls-verify refuses the
peer's certificate, of client-connect the client; the others are logged.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tunnel.config import TunnelConfig
from tunnel.protocol.errors import HandshakeError
from tunnel.protocol.x509_checks import openvpn_subject

__all__ = ["ScriptRunner", "certificate_env"]

_RUNNERS = [0]  # ScriptRunners made by this process: the first is "init", later "restart"
SCRIPT_TIMEOUT = 120.0  # seconds; stock waits forever, a bound keeps a hung script from doing so


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def _short_names(cert: x509.Certificate) -> list[tuple[str, str]]:
    subject = openvpn_subject(cert.subject)
    pairs = []
    for part in subject.split(", "):
        name, _, value = part.partition("=")
        pairs.append((name, value))
    return pairs


def certificate_env(chain: list[x509.Certificate]) -> dict[str, str]:
    """X509_N_*, tls_id_N, tls_serial(_hex)_N, tls_digest(_sha256)_N for depth N = index."""
    env: dict[str, str] = {}
    for depth, cert in enumerate(chain):
        der = cert.public_bytes(serialization.Encoding.DER)
        for name, value in _short_names(cert):
            env[f"X509_{depth}_{name}"] = value
        env[f"tls_id_{depth}"] = openvpn_subject(cert.subject)
        env[f"tls_serial_{depth}"] = str(cert.serial_number)
        serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8 or 1, "big")
        env[f"tls_serial_hex_{depth}"] = _colon_hex(serial)
        env[f"tls_digest_{depth}"] = _colon_hex(hashlib.sha1(der).digest())
        env[f"tls_digest_sha256_{depth}"] = _colon_hex(hashlib.sha256(der).digest())
    return env


@dataclass
class ScriptRunner:
    """Runs the configured hooks of one tunnel process."""

    cfg: TunnelConfig
    log: logging.Logger
    base: dict[str, str] = field(default_factory=dict)  # variables every hook gets
    started_at: int = field(default_factory=lambda: int(time.time()))
    _warned: set[str] = field(default_factory=set)
    # Stock keeps one environment for the process: what up and route-up set (dev, ifconfig_*,
    # script_context, redirect_gateway) stays there for every later script.
    sticky: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _RUNNERS[0] += 1
        self.context = "init" if _RUNNERS[0] == 1 else "restart"
        cfg = self.cfg
        self.base = {
            "config": os.path.basename(cfg.source),
            "daemon": "1" if cfg.ops.daemon is not None else "0",
            "daemon_log_redirect": "1" if cfg.log_file is not None else "0",
            "daemon_pid": str(os.getpid()),
            "daemon_start_time": str(self.started_at),
            "verb": str(cfg.verb),
            **cfg.ops.setenv,
        }
        if cfg.role == "server":
            self.base.update(proto_1=cfg.proto.rstrip("46") or "udp", local_port_1=str(cfg.lport),
                             remote_port_1=str(cfg.rport))
        else:
            for index, remote in enumerate(cfg.remotes, 1):
                self.base[f"proto_{index}"] = remote.proto.rstrip("46")
                self.base[f"remote_{index}"] = remote.host
                self.base[f"remote_port_{index}"] = str(remote.port)

    def configured(self, hook: str) -> bool:
        return hook in self.cfg.ops.scripts

    def _allowed(self, hook: str) -> bool:
        if self.cfg.script_security >= 2:
            return True
        if hook not in self._warned:
            self._warned.add(hook)
            self.log.warning("WARNING: External program may not be called unless "
                             "'--script-security 2' or higher is enabled. See --help text or "
                             "man page for detailed info. (%s not run)", hook)
        return False

    def run(self, hook: str, args: list[str], env: Mapping[str, str]) -> bool | None:
        """Run `hook` if configured; True/False for its exit status, None if not run."""
        command = self.cfg.ops.scripts.get(hook)
        if command is None or not self._allowed(hook):
            return None
        argv = [*shlex.split(command), *args]
        full = dict(os.environ)
        full.update(self.base)
        full.update(self.sticky)
        full.update(env)
        full["script_type"] = hook
        try:
            result = subprocess.run(argv, env=full, stdin=subprocess.DEVNULL,
                                    timeout=SCRIPT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.log.warning("%s script %s failed to run: %s", hook, argv[0], exc)
            return False
        if result.returncode != 0:
            self.log.warning("WARNING: Failed running command (--%s): external program exited "
                             "with error status: %d", hook, result.returncode)
            return False
        return True

    # -- hooks with their arguments ---------------------------------------------------------

    def device_env(self, dev: str, mtu: int, local: str, netmask: str, context: str
                   ) -> dict[str, str]:
        return {"dev": dev, "dev_type": "tun", "tun_mtu": str(mtu), "ifconfig_local": local,
                "ifconfig_netmask": netmask, "script_context": context}

    def up_down(self, hook: str, env: dict[str, str]) -> bool | None:
        if hook == "up":
            self.sticky.update(
                (k, v) for k, v in env.items()
                if k in ("dev", "dev_type", "tun_mtu", "ifconfig_local", "ifconfig_netmask",
                         "script_context"))
        args = [env["dev"], env["tun_mtu"], "0", env["ifconfig_local"], env["ifconfig_netmask"],
                env["script_context"]]
        return self.run(hook, args, env)

    def tls_verify(self, chain: list[x509.Certificate], address: tuple[str, int] | None) -> None:
        """Raise HandshakeError unless tls-verify accepts every depth (stock: deepest first)."""
        if not self.configured("tls-verify"):
            return
        env = certificate_env(chain)
        if address is not None:
            env["untrusted_ip"], env["untrusted_port"] = address[0], str(address[1])
        for depth in range(len(chain) - 1, -1, -1):
            depth_env = {k: v for k, v in env.items() if _depth_of(k) is None or
                         (_depth_of(k) or 0) >= depth}
            if depth == 0:
                cn = env.get("X509_0_CN")
                if cn is not None:
                    depth_env["common_name"] = cn
            subject = env[f"tls_id_{depth}"]
            if self.run("tls-verify", [str(depth), subject], depth_env) is not True:
                raise HandshakeError(f"VERIFY SCRIPT ERROR: depth={depth}, {subject}")

    def ipchange(self, address: tuple[str, int], common_name: str | None,
                 env: dict[str, str]) -> bool | None:
        """ipchange when the remote is first authenticated on a connection (stock's
        link_socket_connection_initiated): argv "IP PORT" as one word, trusted_ip/port and
        common_name in the environment, which stay there for later scripts as in stock."""
        self.sticky.update(trusted_ip=address[0], trusted_port=str(address[1]),
                           common_name=common_name or "")
        return self.run("ipchange", [f"{address[0]} {address[1]}"], env)

    def route_up(self, env: dict[str, str]) -> bool | None:
        self.sticky["redirect_gateway"] = env.get("redirect_gateway", "0")
        return self.run("route-up", [], env)

    def client_connect(self, env: dict[str, str]) -> tuple[bool | None, str]:
        """(exit status, what the script wrote to its config file)."""
        fd, path = tempfile.mkstemp(prefix="openvpn_cc_", suffix=".tmp")
        os.close(fd)
        try:
            env = {**env, "client_connect_config_file": path}
            now = datetime.datetime.now()
            env.setdefault("time_ascii", now.strftime("%Y-%m-%d %H:%M:%S"))
            env.setdefault("time_unix", str(int(now.timestamp())))
            status = self.run("client-connect", [path], env)
            with open(path, encoding="utf-8", errors="replace") as stream:
                written = stream.read(1 << 20)
            return status, written
        finally:
            os.unlink(path)


def _depth_of(name: str) -> int | None:
    for prefix in ("X509_", "tls_id_", "tls_serial_hex_", "tls_serial_", "tls_digest_sha256_",
                   "tls_digest_"):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            number = rest.split("_", 1)[0]
            return int(number) if number.isdigit() else None
    return None
