"""client-config-dir files and ifconfig-pool-persist (app/ccd.py) with the server's pool."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from tunnel.app.ccd import CcdReader, PoolPersistFile, load_pool_persist
from tunnel.protocol.addresspool import AddressPool
from tunnel.protocol.clientconfig import ClientConfig

LOG = logging.getLogger("test")
V4 = ipaddress.IPv4Address


def test_ccd_file_by_common_name_then_default(tmp_path: Path) -> None:
    (tmp_path / "alice").write_text(
        'ifconfig-push 10.8.0.50 255.255.255.0\niroute 192.168.40.0 255.255.255.0\n'
        'push "route 10.9.0.0 255.255.0.0"\npush-reset\n# a comment\n')
    (tmp_path / "DEFAULT").write_text("disable\n")
    reader = CcdReader(tmp_path, exclusive=False, log=LOG)
    assert reader("alice") == ClientConfig(
        disable=False, push_reset=True, push=("route 10.9.0.0 255.255.0.0",),
        ifconfig_push=V4("10.8.0.50"),
        iroutes=(ipaddress.IPv4Network("192.168.40.0/24"),))
    assert reader("bob") == ClientConfig(disable=True)
    # A CN that is not a plain file name never reaches the file system beyond DEFAULT.
    assert reader("../alice") == ClientConfig(disable=True)


def test_ccd_exclusive_and_bad_files_refuse(tmp_path: Path) -> None:
    (tmp_path / "carol").write_text("redirect-gateway def1\n")
    reader = CcdReader(tmp_path, exclusive=True, log=LOG)
    assert reader("nobody-here") is None  # no file: refused under ccd-exclusive
    assert reader("carol") is None  # an unsupported directive: refused, not skipped
    assert CcdReader(tmp_path, exclusive=False, log=LOG)("dave") == ClientConfig()


def test_pool_persist_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ipp.txt"
    path.write_text("alice,10.8.0.7,\nbob,10.8.0.3,fd00::3\ngarbage\nmallory,10.9.9.9,\n")
    pool = AddressPool(V4("10.8.0.2"), V4("10.8.0.10"))
    assert load_pool_persist(path, pool, LOG) == 2  # mallory's address is not in the pool
    assert pool.allocate("carol") == V4("10.8.0.2")  # never-used addresses go first
    assert pool.allocate("alice") == V4("10.8.0.7")
    assert pool.allocate("bob") == V4("10.8.0.3")
    persist = PoolPersistFile(path)
    persist.write(pool)
    persist.close()
    assert path.read_text().splitlines() == ["alice,10.8.0.7,", "bob,10.8.0.3,", "carol,10.8.0.2,"]
    # After a restart the addresses come back to the same names.
    again = AddressPool(V4("10.8.0.2"), V4("10.8.0.10"))
    assert load_pool_persist(path, again, LOG) == 3
    assert again.allocate("bob") == V4("10.8.0.3")
