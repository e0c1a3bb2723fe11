"""A client's config from several sources: a client-auth body applied after the ccd file."""

from __future__ import annotations

from ipaddress import IPv4Address as V4
from ipaddress import IPv4Network as Net4

from tunnel.protocol.clientconfig import ClientConfig


def test_a_later_config_adds_flags_appends_lists_and_overrides_the_address() -> None:
    ccd = ClientConfig(push=("route 10.1.0.0 255.255.0.0",), ifconfig_push=V4("10.8.0.50"),
                       iroutes=(Net4("192.168.1.0/24"),))
    body = ClientConfig(push_reset=True, push=("dhcp-option DNS 10.8.0.1",),
                        iroutes=(Net4("192.168.2.0/24"),))
    merged = ccd.then(body)
    assert merged == ClientConfig(
        disable=False, push_reset=True,
        push=("route 10.1.0.0 255.255.0.0", "dhcp-option DNS 10.8.0.1"),
        ifconfig_push=V4("10.8.0.50"),  # the body did not say: the ccd file's stays
        iroutes=(Net4("192.168.1.0/24"), Net4("192.168.2.0/24")))
    assert ccd.then(ClientConfig(ifconfig_push=V4("10.8.0.60"))).ifconfig_push == V4("10.8.0.60")
    assert ClientConfig().then(ClientConfig(disable=True)).disable
