"""The management interface of a multi-worker server (`tunnel server --workers N`).

The interface lives in the supervisor (one port, one log history, one state); the clients
live in the workers. So every command that is about clients is asked of the workers over
their control sockets and the answers are combined:

- `status [n]`, `load-stats`, `bytecount n`: each worker's status snapshot, merged as for
  the status file (the clients of all workers; counters summed);
- `kill cn`, `kill IP:port`, `client-kill CID [M]`: forwarded to the workers; the one that
  holds the client ends its session and says how many it ended. Client ids are unique
  across the workers (the supervisor gives each its id as it places it), so the id `status`
  lists is the one `client-kill` takes;
- `signal`, `hold`, `log`, `state`, `verb`...: the supervisor's own, as in one process.

`management-client-auth` (per-client notifications and decisions), `management-up-down` and
`management-query-passwords` are refused with workers (workers.unsupported_with_workers).

The command table is synchronous (stock's one-line-at-a-time protocol), so these ask the
workers synchronously (`Supervisor.ask`): a few milliseconds during which the supervisor
still answers the workers' address requests, bounded by a timeout after which a worker that
did not answer is left out (and said so in the log).
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

from tunnel.app.management.host import AuthDecision, ByteCount
from tunnel.app.runtime import version_line
from tunnel.app.status import StatusSnapshot, render_status
from tunnel.app.worker_ipc import WorkerGroup, merge_snapshots, snapshot_from_json

__all__ = ["WorkersHost", "merged_status"]


def merged_status(workers: WorkerGroup) -> StatusSnapshot:
    """The status of all running workers, merged (for the status file and SIGUSR2 too):
    those that do not answer in time are left out (`ask` says so in the log)."""
    parts = []
    for _index, answer in workers.ask({"op": "status"}):
        try:
            parts.append(snapshot_from_json(answer))
        except (KeyError, ValueError, TypeError):
            continue
    return merge_snapshots(version_line(), time.time(), parts)


class WorkersHost:
    role: Literal["server", "client"] = "server"

    def __init__(self, supervisor: WorkerGroup) -> None:
        self.supervisor = supervisor

    def _snapshot(self) -> StatusSnapshot:
        return merged_status(self.supervisor)

    def status_text(self, version: int) -> str:
        return render_status(self._snapshot(), version, extras=False)

    def load_stats(self) -> tuple[int, int, int]:
        snapshot = self._snapshot()
        return (len(snapshot.clients or ()), snapshot.traffic.link_rx,
                snapshot.traffic.link_tx)

    def bytecounts(self) -> list[ByteCount]:
        return [ByteCount(row.client_id, row.bytes_received, row.bytes_sent)
                for row in self._snapshot().clients or ()]

    def throw_signal(self, signum: int) -> None:
        os.kill(os.getpid(), signum)  # the supervisor's handlers: for all workers

    def _kill(self, message: dict[str, Any]) -> int:
        return sum(int(answer.get("killed", 0))
                   for _index, answer in self.supervisor.ask({"op": "kill", **message}))

    def kill_by_common_name(self, name: str) -> int:
        return self._kill({"cn": name})

    def kill_by_address(self, ip: str, port: int) -> int:
        return self._kill({"address": [ip, port]})

    def client_kill(self, client_id: int, message: str) -> bool:
        return self._kill({"cid": client_id, "message": message}) > 0

    def client_auth(self, decision: AuthDecision) -> bool:
        return False  # management-client-auth is refused with workers: nobody waits
