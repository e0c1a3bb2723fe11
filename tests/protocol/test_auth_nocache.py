"""`auth-nocache` in the protocol: the password is dropped once key-method 2 carried it and
read again from its source for the next key; a pushed auth-token is sent instead."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.protocol.harness import SERVER_ADDR, Pair
from tunnel.protocol.client import Client
from tunnel.protocol.drops import NO_SESSION
from tunnel.protocol.errors import ConfigError
from tunnel.protocol.events import AuthRequested, SessionClosed
from tunnel.protocol.verdicts import TO_TUN


class FileSource:
    """Reads the auth-user-pass file at every call, as the app's auth-nocache reader does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reads = 0

    def __call__(self) -> tuple[str, str]:
        self.reads += 1
        try:
            lines = self.path.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}") from exc
        return lines[0], lines[1]


def _pair(source: FileSource, push: tuple[str, ...] = ()) -> Pair:
    pair = Pair()
    pair.server.settings.session.defer_auth = True
    pair.server.settings.push = (*pair.server.settings.push, *push)
    settings = dataclasses.replace(pair.client.session.settings, auth_nocache=True,
                                   read_user_pass=source)
    pair.client = Client(settings, [SERVER_ADDR], pair.now)
    return pair


def _requests(pair: Pair) -> list[AuthRequested]:
    return [e for e in pair.server_events if isinstance(e, AuthRequested)]


def _holders(pair: Pair) -> list[object]:
    session = pair.client.session
    objects: list[object] = [pair.client, pair.client.settings, session, session.settings]
    for key in session.keys:
        objects += [key, key.local_key]
    return objects


def _values(obj: object) -> list[object]:
    names = list(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        names += list(getattr(cls, "__slots__", ()))
    return [getattr(obj, name, None) for name in names]


def _connect(pair: Pair, auth_id: int) -> AuthRequested:
    pair.run(3)
    request = _requests(pair)[-1]
    assert request.auth_id == auth_id
    session = pair.server.sessions[0]
    assert pair.server.authorize(session, auth_id, True, "", None, pair.now)
    pair.run(3)
    return request


def test_password_dropped_after_key_method_2_and_read_again_on_renegotiation(
        tmp_path: Path) -> None:
    path = tmp_path / "up.txt"
    path.write_text("alice\nfirst-secret\n")
    source = FileSource(path)
    pair = _pair(source)
    first = _connect(pair, 1)
    assert (first.username, first.password) == ("alice", "first-secret")
    assert pair.client.session.pushed is not None
    # Nothing the client keeps holds the password any more.
    for holder in _holders(pair):
        for value in _values(holder):
            assert value != "first-secret", holder
            assert not (isinstance(value, tuple) and "first-secret" in value), holder
    assert pair.client.settings.username is None and pair.client.settings.password is None
    assert pair.client.session.primary is not None
    assert pair.client.session.primary.local_key.password is None

    path.write_text("alice\nsecond-secret\n")
    assert pair.client.session.renegotiate(pair.now)
    pair.run(2)
    again = _requests(pair)[-1]
    assert again.reauth and (again.username, again.password) == ("alice", "second-secret")
    assert source.reads == 2


def test_a_pushed_auth_token_replaces_the_password(tmp_path: Path) -> None:
    path = tmp_path / "up.txt"
    path.write_text("alice\nsecret\n")
    source = FileSource(path)
    pair = _pair(source, push=("auth-token SESS_tok3n",))
    _connect(pair, 1)
    path.unlink()  # not needed again: the token is sent
    assert pair.client.session.renegotiate(pair.now)
    pair.run(2)
    again = _requests(pair)[-1]
    assert again.reauth and (again.username, again.password) == ("alice", "SESS_tok3n")
    assert source.reads == 1
    assert not any(isinstance(e, SessionClosed) for e in pair.client_events)


def test_a_source_that_cannot_be_read_again_ends_the_session(tmp_path: Path) -> None:
    path = tmp_path / "up.txt"
    path.write_text("alice\nsecret\n")
    pair = _pair(FileSource(path))
    _connect(pair, 1)
    path.unlink()
    pair.client.session.renegotiate(pair.now)
    pair.run(1)
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed and "auth-user-pass" in closed[0].reason and not closed[0].restart


def test_a_pushed_auth_token_outlives_the_session_until_refused() -> None:
    """Stock keeps the token for the process (reconnects too) and drops it on AUTH_FAILED,
    then starts over with the real password at once, although auth-retry is none (the
    password login itself: tests/corpus/test_auth_token.py against a stock server)."""
    pair = Pair()
    pair.server.settings.session.defer_auth = True
    pair.server.settings.push = (*pair.server.settings.push, "auth-token SESS_tok3n")
    settings = dataclasses.replace(pair.client.session.settings, username="alice",
                                   password="secret", auth_retry="none")
    pair.client = Client(settings, [SERVER_ADDR], pair.now)
    _connect(pair, 1)
    assert pair.client.session.auth_token == ("alice", "SESS_tok3n")
    pair.server.kill(pair.server.sessions[0], "RESTART", "test", pair.now)  # a new session
    pair.run(4)
    sent = _requests(pair)[-1]
    assert (sent.username, sent.password) == ("alice", "SESS_tok3n")  # the new session's
    session = pair.server.sessions[-1]
    assert pair.server.authorize(session, sent.auth_id, False, "expired", None, pair.now)
    pair.run(3)
    closed = [e for e in pair.client_events if isinstance(e, SessionClosed)]
    assert closed[-1].restart and "AUTH_FAILED" in closed[-1].reason  # auth-retry none
    assert pair.client.finished is None
    assert pair.client.token_store.token is None
    assert pair.client.session.auth_token is None  # the next session sends the password
    # ... and gets through, although the refused server session still retransmits its
    # AUTH_FAILED to the same address while it lingers (stock: only a hard reset starts a
    # client's session; the rest is "Unroutable control packet").
    pair.run(8)
    retry = _requests(pair)[-1]
    assert (retry.username, retry.password) == ("alice", "secret") and retry is not sent
    session = pair.server.sessions[-1]
    assert pair.server.authorize(session, retry.auth_id, True, "", None, pair.now)
    pair.run(3)
    assert pair.client.session.send_key is not None, pair.client_events[-3:]
    sealed = pair.client_sends(b"after the retry")
    assert sealed is not None and pair.to_server(sealed) == TO_TUN
    assert pair.client.drops.counts[NO_SESSION] > 0  # the old session's packets, refused
