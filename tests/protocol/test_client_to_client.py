"""client-to-client: a packet from one client to another is re-sealed for the other inside
the server and never reaches the server's TUN device (issue 11 item 4)."""

from __future__ import annotations

import ipaddress

import pytest

from core import Buffer
from tests.protocol.harness import SERVER_ADDR, Pair, ip_packet
from tunnel.protocol.client import Client
from tunnel.protocol.verdicts import CONSUMED, TO_TUN

OTHER_ADDR = ("192.0.2.11", 40001)


def _two_clients(client_to_client: bool) -> tuple[Pair, Client]:
    pair = Pair()
    pair.server.settings.duplicate_cn = True  # both use the test PKI's one client certificate
    pair.server.settings.client_to_client = client_to_client
    pair.connect()
    second = Client(pair.client.settings, [SERVER_ADDR], pair.now, reconnect=False)
    for _ in range(60):
        for datagram, _addr in second.datagrams_to_send(pair.now):
            pair.to_server_from(datagram, OTHER_ADDR)
        for datagram, addr in pair.server.datagrams_to_send(pair.now):
            if addr == OTHER_ADDR:
                pair.deliver_to(second, datagram)
        pair.now += 0.05
    assert second.session.send_key is not None and second.session.pushed is not None
    return pair, second


@pytest.mark.parametrize("enabled", [True, False])
def test_packets_between_clients(enabled: bool) -> None:
    pair, second = _two_clients(enabled)
    assert second.session.pushed is not None and second.session.pushed.ifconfig is not None
    second_vip = ipaddress.IPv4Address(second.session.pushed.ifconfig[0])
    sealed = pair.sealed_by_client(ip_packet(pair.client_vip, second_vip, b"to the other one"))
    tun_before = len(pair.to_server_tun)
    verdict = pair.to_server(sealed)
    if not enabled:
        assert verdict == TO_TUN  # the kernel's business (ip_forward), as in stock
        return
    assert verdict == CONSUMED and len(pair.to_server_tun) == tun_before
    out = [d for d, addr in pair.server.datagrams_to_send(pair.now) if addr == OTHER_ADDR]
    assert out, "nothing forwarded to the other client"
    buf = Buffer(4096)
    buf.reset(256)
    buf.append(out[0])
    assert second.receive(buf, SERVER_ADDR, pair.now) == TO_TUN
    assert bytes(buf.data).endswith(b"to the other one")
