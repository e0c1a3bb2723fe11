"""`pull-filter accept|ignore|reject TEXT` (OpenVPN 2.6, options.c: apply_pull_filter()).

Each pushed option is matched against the filters in config order; the first filter whose TEXT
the option starts with decides: accept keeps it, ignore drops it with a log line, reject
refuses the whole push. An option no filter matches is accepted. A reject restarts the
connection as stock's does (SIGUSR1 "Offending option received from server"): the session ends
with restart=True and the client reconnects under its connect-retry rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from tunnel.config.model_ops import PullFilter
from tunnel.protocol.errors import PushRejected

__all__ = ["make_push_filter"]

_PUSH_REPLY = "PUSH_REPLY"


def make_push_filter(filters: Sequence[PullFilter], log: logging.Logger) -> Callable[[str], str]:
    rules = list(filters)

    def apply(message: str) -> str:
        if not message.startswith(_PUSH_REPLY):
            return message
        kept = []
        for item in message[len(_PUSH_REPLY):].split(","):
            option = item.strip()
            if not option:
                kept.append(item)
                continue
            action = next((kind for kind, text in rules if option.startswith(text)), "accept")
            if action == "accept":
                kept.append(item)
            elif action == "ignore":
                log.info("Pushed option removed by filter: '%s'", option)
            else:
                raise PushRejected(f"Pushed option rejected by pull-filter: '{option}'")
        return _PUSH_REPLY + ",".join(kept)

    return apply
