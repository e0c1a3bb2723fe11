"""`auth-user-pass-verify CMD via-file|via-env` on a server (issue 11 item 1).

Each client key's username/password goes to the command as stock passes it
(`ssl_verify.c: verify_user_pass_script()`): via-file, a temporary file (mode 0600, removed
afterwards) with the username and the password on two lines, its name appended to the
command's arguments; via-env, the `password` variable (passed only with `script-security 3`,
as stock's env filter does). Always `username`, `common_name`, `untrusted_ip`,
`untrusted_port`, `script_type=user-pass-verify` and the client's IV_ peer-info. Exit status 0
accepts, anything else (or a command that cannot run, or `script-security` below 2) refuses:
the client gets AUTH_FAILED. The command runs in a subprocess, never blocking the event loop,
and is bounded by hand-window (the session's own deadline refuses a client left waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import tempfile
from collections.abc import Callable

from tunnel.protocol.events import AuthRequested
from tunnel.protocol.server import Server
from tunnel.protocol.session import Session

__all__ = ["AuthVerifier"]


class AuthVerifier:
    def __init__(
        self,
        *,
        command: str,
        method: str,
        script_security: int,
        server: Server,
        loop: asyncio.AbstractEventLoop,
        log: logging.Logger,
        kick: Callable[[], None],
        timeout: float,
    ) -> None:
        self.argv = shlex.split(command)
        self.via_file = method == "via-file"
        self.script_security = script_security
        self.server = server
        self.loop = loop
        self.log = log
        self.kick = kick
        self.timeout = timeout
        self.tasks: set[asyncio.Task[None]] = set()

    def request(self, event: AuthRequested) -> None:
        entry = self.server.peer(event.peer_id)
        if entry is None:
            return
        session = entry.session
        task = self.loop.create_task(self._verify(session, event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _verify(self, session: Session, event: AuthRequested) -> None:
        ok = False
        try:
            ok = await self._run(session, event)
        except Exception as exc:
            self.log.warning("auth-user-pass-verify: %s", exc)
        who = f"{session.remote_addr[0]}:{session.remote_addr[1]}"
        if ok:
            self.log.info("%s TLS: Username/Password authentication succeeded for username "
                          "'%s'", who, event.username)
        else:
            self.log.info("%s TLS Auth Error: Auth Username/Password verification failed for "
                          "peer", who)
        self.server.authorize(session, event.auth_id, ok,
                              "" if ok else "auth-user-pass-verify refused the client", None,
                              self.loop.time())
        self.kick()

    async def _run(self, session: Session, event: AuthRequested) -> bool:
        if self.script_security < 2:
            self.log.warning("WARNING: External program may not be called unless "
                             "'--script-security 2' or higher is enabled. See --help text or "
                             "man page for detailed info.")
            return False
        env = dict(os.environ)
        env.update({k: v for k, v in session.peer_info.items() if k.startswith("IV_")})
        env.update({
            "script_type": "user-pass-verify",
            "username": event.username or "",
            "common_name": session.peer_common_name or event.username or "",
            "untrusted_ip": session.remote_addr[0],
            "untrusted_port": str(session.remote_addr[1]),
        })
        argv = list(self.argv)
        path: str | None = None
        try:
            if self.via_file:
                fd, path = tempfile.mkstemp(prefix="openvpn_up_")
                with os.fdopen(fd, "w") as out:  # mkstemp: mode 0600
                    out.write(f"{event.username or ''}\n{event.password or ''}\n")
                argv.append(path)
            elif self.script_security >= 3:
                env["password"] = event.password or ""
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            try:
                status = await asyncio.wait_for(proc.wait(), self.timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                self.log.warning("auth-user-pass-verify: %s did not finish in %.0f s",
                                 argv[0], self.timeout)
                return False
            return status == 0
        finally:
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
