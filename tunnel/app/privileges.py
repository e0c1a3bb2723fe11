"""`user` / `group`: give up root once the privileged work is done.

The names are looked up at start, so a typo fails before any device exists; the switch itself
happens later (`drop`), once the TUN device and the UDP socket are open (and, for a client,
once the pushed addresses are configured, as OpenVPN does). Supplementary groups are cleared
first, then the gid, then the uid: after setuid() the process could no longer change the others.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

__all__ = ["PrivilegeError", "Target", "UnknownGroup", "drop", "lookup"]


class PrivilegeError(OSError):
    """A user/group name does not exist, or the switch failed; `option` names the culprit."""

    option = "user"


class UnknownGroup(PrivilegeError):
    option = "group"


@dataclass(frozen=True, slots=True)
class Target:
    user: str | None
    uid: int | None
    group: str | None
    gid: int | None

    @property
    def wanted(self) -> bool:
        return self.uid is not None or self.gid is not None


def lookup(user: str | None, group: str | None) -> Target:
    uid: int | None = None
    gid: int | None = None
    if user is not None:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise PrivilegeError(f"option 'user': no such user {user!r}") from None
        uid = entry.pw_uid
        if group is None:
            # Unlike OpenVPN (which then keeps gid 0), take the user's own primary group:
            # a process that gave up root should not keep root's group.
            gid = entry.pw_gid
            try:
                group = grp.getgrgid(gid).gr_name
            except KeyError:
                group = str(gid)
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise UnknownGroup(f"option 'group': no such group {group!r}") from None
    return Target(user, uid, group, gid)


def drop(target: Target) -> list[str]:
    """Switch to the target group and user; the log lines OpenVPN prints for it."""
    lines: list[str] = []
    try:
        if target.gid is not None:
            os.setgroups([])
            os.setgid(target.gid)
            lines.append(f"GID set to {target.group}")
        if target.uid is not None:
            os.setuid(target.uid)
            lines.append(f"UID set to {target.user}")
    except OSError as exc:
        raise PrivilegeError(
            exc.errno or 1, f"cannot switch to user/group: {exc.strerror}"
        ) from None
    return lines
