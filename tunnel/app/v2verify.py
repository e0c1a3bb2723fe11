"""`tls-crypt-v2-verify CMD`: run the command on a client key's metadata, as stock does
(`tls_crypt.c: tls_crypt_v2_verify_metadata()`): the metadata (without its type byte) in a
temporary file, `script_type=tls-crypt-v2-verify`, `metadata_type` and `metadata_file` in the
environment; exit status 0 accepts the client. Runs only once the client proved its address
(the HMAC cookie), so a spoofed flood cannot make us start processes.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile

from tunnel.app.logsetup import LOGGER_NAME
from tunnel.protocol.wrap.tls_crypt_v2 import MetadataVerifier

__all__ = ["VERIFY_TIMEOUT", "metadata_verifier"]

VERIFY_TIMEOUT = 30.0  # seconds; a hung script refuses the client instead of hanging us
_log = logging.getLogger(LOGGER_NAME)


def metadata_verifier(command: str) -> MetadataVerifier:
    argv = shlex.split(command)

    def verify(metadata_type: int, metadata: bytes) -> bool:
        fd, path = tempfile.mkstemp(prefix="tls_crypt_v2_metadata_")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(metadata)
            env = dict(os.environ, script_type="tls-crypt-v2-verify",
                       metadata_type=str(metadata_type), metadata_file=path)
            try:
                result = subprocess.run(argv, env=env, timeout=VERIFY_TIMEOUT, check=False,
                                        stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired) as exc:
                _log.warning("tls-crypt-v2-verify %s: %s", argv[0] if argv else "?", exc)
                return False
            ok = result.returncode == 0
            _log.info("TLS CRYPT V2 VERIFY SCRIPT %s", "OK" if ok else "ERROR")
            return ok
        finally:
            try:
                os.unlink(path)
            except OSError:
                _log.warning("tls-crypt-v2-verify: could not remove %s", path)

    return verify
