#!/usr/bin/env python3
"""Capture control-channel wrap vectors from the stock `openvpn` (root; a throw-away netns pair).

A stock server in ns_a and a stock client in ns_b, with one wrap configured on both; the first
control datagrams are read off the server's veth with an AF_PACKET socket, exactly as they
cross the wire. Prints JSON: the key, the config lines, and the datagrams per direction. The
vectors in tests/protocol/wrap_vectors.py were made with this script:

    sudo .venv/bin/python scripts/capture_wrap_vectors.py tls-auth-sha1 > /tmp/v.json
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.openvpn_peer import client_config, make_pki, server_config, start_peer
from tests.netns import NetnsPair

ETH_P_ALL = 0x0003
PORT = 1194
WANT = 8  # datagrams per direction: the resets, the TLS start, some ACKs


def case_lines(case: str, key: Path, workdir: Path) -> tuple[list[str], list[str]]:
    if case == "tls-auth-sha1":
        return [f"tls-auth {key} 0"], [f"tls-auth {key} 1"]
    if case == "tls-auth-sha512-nodir":
        return [f"tls-auth {key}", "auth SHA512"], [f"tls-auth {key}", "auth SHA512"]
    if case == "tls-crypt":
        return [f"tls-crypt {key}"], [f"tls-crypt {key}"]
    if case == "tls-crypt-v2":
        client_key = workdir / "client-v2.key"
        subprocess.run(["openvpn", "--tls-crypt-v2", str(key), "--genkey", "tls-crypt-v2-client",
                        str(client_key), "dmVjdG9y"], check=True, capture_output=True)
        return [f"tls-crypt-v2 {key}"], [f"tls-crypt-v2 {client_key}"]
    raise SystemExit(f"unknown case {case}")


def main() -> int:
    case = sys.argv[1] if len(sys.argv) > 1 else "tls-auth-sha1"
    workdir = Path(tempfile.mkdtemp(prefix="wrapvec-"))
    key = workdir / "wrap.key"
    kind = "tls-crypt-v2-server" if case == "tls-crypt-v2" else "secret"
    subprocess.run(["openvpn", "--genkey", kind, str(key)], check=True, capture_output=True)
    pki = make_pki(workdir / "pki")
    server_extra, client_extra = case_lines(case, key, workdir)
    out: dict[str, object] = {"case": case, "key": key.read_text(), "server": server_extra,
                              "client": client_extra, "to_server": [], "to_client": []}
    if case == "tls-crypt-v2":
        out["client_key"] = (workdir / "client-v2.key").read_text()
    with NetnsPair(workdir) as pair:
        subnet = pair.new_subnet()
        with pair.entered(pair.ns_a):
            sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        sniffer.bind((pair.veth_a, ETH_P_ALL))
        sniffer.settimeout(0.2)
        text_s = server_config(pki=pki, local=pair.addr_a, subnet=subnet, cipher="AES-256-GCM",
                               extra=server_extra)
        text_c = client_config(pki=pki, remote=pair.addr_a, cipher="AES-256-GCM",
                               extra=client_extra)
        with start_peer(pair, pair.ns_a, kind="stock", role="server", config_text=text_s,
                        workdir=workdir) as server:
            time.sleep(1.0)
            with start_peer(pair, pair.ns_b, kind="stock", role="client", config_text=text_c,
                            workdir=workdir):
                deadline = time.monotonic() + 10
                to_server: list[str] = out["to_server"]  # type: ignore[assignment]
                to_client: list[str] = out["to_client"]  # type: ignore[assignment]
                while time.monotonic() < deadline and (len(to_server) < WANT
                                                       or len(to_client) < WANT):
                    try:
                        packet = sniffer.recv(65535)
                    except TimeoutError:
                        continue
                    if packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
                        continue
                    header = (packet[0] & 0x0F) * 4
                    src, dst = struct.unpack_from("!HH", packet, header)
                    payload = packet[header + 8:].hex()
                    if dst == PORT and len(to_server) < WANT:
                        to_server.append(payload)
                    elif src == PORT and len(to_client) < WANT:
                        to_client.append(payload)
            out["server_log"] = server.log()[-3000:]
        sniffer.close()
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
