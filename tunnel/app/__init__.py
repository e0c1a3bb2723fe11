"""`tunnel server` / `tunnel client`: an OpenVPN config file in, a running tunnel out.

Layout:

- `run.py`: the process's main (config, logging, management/metrics, restarts);
- `runtime.py`: `Runtime`, what both roles share (driver, signals, status, shutdown);
- `serve.py`, `connect.py`: the server and the client halves;
- `build.py`: TunnelConfig -> protocol objects, via tunnel.runtime;
- `link.py`: remotes and the UDP socket; `device.py`: the TUN device, addresses, routes;
- `peers.py`: the server's clients, kept from its events (counters live on the sessions);
- `eventlog.py`: events -> log lines; `logsetup.py`: verb -> logging levels;
- `status.py`: the status file; `privileges.py`: user/group;
- `effects.py`: what each option the parser accepts does at run time.
"""

from tunnel.app.run import run_tunnel
from tunnel.app.runtime import StartupError

__all__ = ["StartupError", "run_tunnel"]
