"""`tunnel server` / `tunnel client`: an OpenVPN config file in, a running tunnel out.

Layout: `run.py` (the asyncio main shared by both roles, signals, shutdown), `serve.py` and
`connect.py` (the server and client halves), `build.py` (TunnelConfig -> protocol objects via
tunnel.runtime), `link.py` (remotes and the UDP socket), `device.py` (the TUN device and its
addresses/routes), `accounting.py` (byte counters around the endpoint), `mssfix.py` (TCP MSS
clamping), `peers.py` (the server's connected clients), `eventlog.py` (events -> log lines),
`status.py` (the status file), `logsetup.py` (verb -> logging), `privileges.py` (user/group),
`effects.py` (what each accepted option does at run time).
"""

from tunnel.app.run import StartupError, run_tunnel

__all__ = ["StartupError", "run_tunnel"]
