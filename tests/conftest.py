"""Shared test policy: requirement markers (tests/tools.py) and the `netns_pair` fixture.

Every test that needs root or an external tool says so with a marker:

    root            namespaces, TUN devices           openvpn   the stock peer
    iperf3, ping    traffic through the tunnel        nft       loss on a veth
    ip              namespaces/veth (iproute2)        unshare, setpriv (util-linux)
    tcpdump, sockperf, openssl                        docker_compose (compose file only)
    docker          a Docker engine + compose         debootstrap

(the full table, with the Debian package of each, is TOOLS in tests/tools.py; markers are
strict, so a misspelt one is an error). Tests using the `netns_pair` fixture get `root` and
`ip` automatically. On a developer machine a missing requirement skips with the reason, and the
end of the run lists what was missing plus the one `apt-get install` line that brings it;
under CI (`CI=true`) a missing requirement is a failure, never a skip, so CI cannot pass
without running them. A fixture that learns at run time that it needs a tool calls
`tests.tools.require_tool(name)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.tools")  # imported here before pytest loads it as a plugin

from tests.netns import NetnsPair  # noqa: E402
from tests.tools import IN_CI  # noqa: E402  (re-exported: tests import it from here)

__all__ = ["IN_CI"]

pytest_plugins = ["tests.tools"]


@pytest.fixture(name="netns_pair")
def netns_pair_fixture(tmp_path: Path) -> Iterator[NetnsPair]:
    """A fresh NetnsPair (tests/netns.py) per test; spawned processes log to tmp_path."""
    with NetnsPair(workdir=tmp_path) as pair:
        yield pair
