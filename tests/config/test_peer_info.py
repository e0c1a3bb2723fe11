"""push-peer-info and setenv UV_* in the client's key-method 2 peer-info (ssl.c:
push_peer_info(), detail 2 without the option, 3 with it)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from tests.config.conftest import MINIMAL_CLIENT, MINIMAL_SERVER, Parse
from tunnel.app.build import build_session_settings
from tunnel.app.effects import no_effect_reason
from tunnel.app.peerinfo import default_route_hwaddr
from tunnel.protocol.keymethod2 import decode_key_method2, encode_key_method2, new_key_method2
from tunnel.protocol.messages import parse_peer_info


def _sent_lines(parse: Parse, extra: str) -> list[str]:
    """The peer-info lines exactly as they travel in the client's key-method 2 message."""
    settings = build_session_settings(parse(MINIMAL_CLIENT + extra), ipv6_link=False)
    wire = encode_key_method2(
        new_key_method2(from_client=True, options=settings.options_string,
                        peer_info=settings.peer_info), from_client=True)
    text = decode_key_method2(wire, from_client=True).peer_info
    assert text is not None and text.endswith("\n")
    assert f"{text}\0".encode() in wire  # the bytes themselves, NUL-terminated
    return text.splitlines()


def test_push_peer_info_adds_stocks_detail_3(parse: Parse) -> None:
    config = ("setenv UV_GROUP \"sales team\"\nsetenv UV_ID 42\nsetenv IV_GUI_VER mygui_1.0\n"
              "setenv OTHER x\npush-peer-info\n")
    lines = _sent_lines(parse, config)
    plain = _sent_lines(parse, "")
    assert lines[:len(plain)] == plain  # the level-2 lines first, unchanged
    tail = lines[len(plain):]
    hwaddr = default_route_hwaddr()
    expected = ([f"IV_HWADDR={hwaddr}"] if hwaddr else []) + [
        f"IV_SSL={ssl.OPENSSL_VERSION}", f"IV_PLAT_VER={os.uname().release}",
        # stock's env list is newest first
        "IV_GUI_VER=mygui_1.0", "UV_ID=42", "UV_GROUP=sales team"]
    assert tail == expected
    info = parse_peer_info("\n".join(lines))
    assert info["UV_GROUP"] == "sales team" and "OTHER" not in info


def test_without_push_peer_info_only_gui_version_is_copied(parse: Parse) -> None:
    lines = _sent_lines(parse, "setenv UV_ID 42\nsetenv IV_GUI_VER mygui_1.0\n")
    assert lines[-1] == "IV_GUI_VER=mygui_1.0"
    assert not any(line.startswith(("UV_", "IV_SSL=", "IV_PLAT_VER=", "IV_HWADDR="))
                   for line in lines)


def test_old_setenv_spelling_and_roles(parse: Parse) -> None:
    lines = _sent_lines(parse, "setenv PUSH_PEER_INFO\n")
    assert any(line.startswith("IV_SSL=") for line in lines)
    assert "PUSH_PEER_INFO=" not in "\n".join(lines)
    assert no_effect_reason("push-peer-info", parse(MINIMAL_CLIENT + "push-peer-info\n")) is None
    assert no_effect_reason("push-peer-info", parse(MINIMAL_SERVER + "push-peer-info\n"))


def test_default_route_hwaddr(tmp_path: Path) -> None:
    route = tmp_path / "route"
    route.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "tun0\t00000000\t0100080A\t0003\t0\t0\t0\t00000080\t0\t0\t0\n"
        "wlan0\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n")
    for dev, mac in (("eth0", "02:AB:00:00:00:01\n"), ("wlan0", "02:ab:00:00:00:02\n")):
        (tmp_path / dev).mkdir()
        (tmp_path / dev / "address").write_text(mac)
    assert default_route_hwaddr(route, tmp_path) == "02:ab:00:00:00:01"  # lowest metric
    (tmp_path / "eth0" / "address").write_text("\n")  # a device without a MAC
    assert default_route_hwaddr(route, tmp_path) is None
    assert default_route_hwaddr(tmp_path / "missing", tmp_path) is None
