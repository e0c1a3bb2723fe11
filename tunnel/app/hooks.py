"""Where the scripts (scripts.py) and client-config-dir (ccd.py) meet the running tunnel.

`PeerRecorder` is a TlsSettings peer check: it runs tls-verify and keeps the certificate
variables of each verified peer (by address) for the scripts that follow (up on a client;
client-connect, learn-address, client-disconnect on a server). `ServerHooks` supplies
ServerSettings.client_config / on_client_connected / on_client_gone.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict

from cryptography import x509

from tunnel.app.ccd import CcdReader, parse_client_config
from tunnel.app.scripts import ScriptRunner, certificate_env
from tunnel.protocol.addresspool import AddressPool
from tunnel.protocol.clientconfig import ClientConfig
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.session import Session

__all__ = ["PeerRecorder", "ServerHooks"]

Address = tuple[str, int]
_MAX_REMEMBERED = 1024  # peers whose certificate variables are kept until they connect


class PeerRecorder:
    """Peer check: tls-verify, then remember the certificate's script variables."""

    def __init__(self, scripts: ScriptRunner, ca_pem: str) -> None:
        self.scripts = scripts
        self.cas = x509.load_pem_x509_certificates(ca_pem.encode()) if ca_pem else []
        self.env_by_address: OrderedDict[Address | None, dict[str, str]] = OrderedDict()

    def chain(self, cert: x509.Certificate) -> list[x509.Certificate]:
        # Python's ssl (3.11) does not hand out the verified chain: the leaf and, above it, the
        # CAs of ours it names as issuer (a two- or three-level PKI, as generators make).
        chain = [cert]
        while len(chain) < 8:
            issuer = next((ca for ca in self.cas if ca.subject == chain[-1].issuer
                           and ca != chain[-1]), None)
            if issuer is None:
                break
            chain.append(issuer)
        return chain

    def __call__(self, cert: x509.Certificate, address: Address | None) -> None:
        chain = self.chain(cert)
        self.scripts.tls_verify(chain, address)
        env = certificate_env(chain)
        cn = env.get("X509_0_CN")
        if cn is not None:
            env["common_name"] = cn
        if address is not None:
            env["untrusted_ip"], env["untrusted_port"] = address[0], str(address[1])
        self.env_by_address[address] = env
        self.env_by_address.move_to_end(address)
        while len(self.env_by_address) > _MAX_REMEMBERED:
            self.env_by_address.popitem(last=False)

    def env_for(self, address: Address | None) -> dict[str, str]:
        return dict(self.env_by_address.get(address, {}))


class ServerHooks:
    def __init__(self, scripts: ScriptRunner, recorder: PeerRecorder, ccd: CcdReader | None,
                 pool: AddressPool[ipaddress.IPv4Address], netmask: str,
                 log: logging.Logger) -> None:
        self.scripts, self.recorder, self.ccd = scripts, recorder, ccd
        self.pool, self.netmask, self.log = pool, netmask, log
        self.connected: dict[int, tuple[ipaddress.IPv4Address, dict[str, str], float]] = {}

    def _client_env(self, session: Session) -> dict[str, str]:
        env = self.recorder.env_for(session.remote_addr)
        env["trusted_ip"], env["trusted_port"] = session.remote_addr[0], str(
            session.remote_addr[1])
        for name, value in session.peer_info.items():
            if name.startswith(("IV_", "UV_")):
                env[name] = value
        if session.peer_common_name is not None:
            env["common_name"] = session.peer_common_name
        env["ifconfig_pool_netmask"] = self.netmask
        return env

    def client_config(self, session: Session) -> ClientConfig | None:
        cn = session.peer_common_name
        config = self.ccd(cn) if self.ccd is not None else ClientConfig()
        if config is None or not self.scripts.configured("client-connect"):
            return config
        env = self._client_env(session)
        offered = config.ifconfig_push or self.pool.peek(cn)
        if offered is not None:
            env["ifconfig_pool_remote_ip"] = str(offered)
        status, written = self.scripts.client_connect(env)
        if status is False:
            self.log.warning("%s:%s: client-connect script refused the client",
                             *session.remote_addr)
            return None
        if written.strip():
            try:
                config = parse_client_config(written, "client-connect output", config)
            except (ConfigError, ValueError) as exc:
                self.log.warning("client-connect output: %s: refusing the client", exc)
                return None
        return config

    def on_client_connected(self, session: Session, vip: ipaddress.IPv4Address) -> None:
        peer_id = session.peer_id
        if peer_id is None or peer_id in self.connected:
            return  # a push sent again, or a renegotiation: stock says nothing new
        env = self._client_env(session)
        env["ifconfig_pool_remote_ip"] = str(vip)
        now = time.time()
        env["time_ascii"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        env["time_unix"] = str(int(now))
        self.connected[peer_id] = (vip, env, now)
        cn = session.peer_common_name or ""
        self.scripts.run("learn-address", ["add", str(vip), cn], env)

    def on_client_gone(self, session: Session, vip: ipaddress.IPv4Address) -> None:
        peer_id = session.peer_id
        known = self.connected.pop(peer_id, None) if peer_id is not None else None
        if known is None:
            return
        _, env, since = known
        env = {**env, "time_duration": str(int(time.time() - since))}
        self.scripts.run("client-disconnect", [], env)
        self.scripts.run("learn-address", ["delete", str(vip)], env)
        self.recorder.env_by_address.pop(session.remote_addr, None)
