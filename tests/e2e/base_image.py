"""The Dockerfile's base image for the engine test: the default if the engine has or can pull
it, else a local stand-in (Debian bookworm with python3 and pip, by debootstrap).

The stand-in is built from what this host uses, so the build inside it reaches the same
package servers the host does:

- the Debian mirrors of the host's apt sources (`apt-cache policy`), and its apt proxy;
- the host's pip settings that name network servers (index-url, extra-index-url,
  trusted-host, proxy, timeout; `file://` indexes and local paths cannot exist in a build);
- the host's CA bundle, as the system bundle and as pip's `cert`, because TLS to the package
  index may be intercepted by a proxy whose CA only the host trusts.

The result is cached as a tarball under /var/cache/pyovpn-tunnel, named by a hash of all of the
above (CA bundle bytes included), written atomically and only used from a root-owned directory
nobody else can write: a cached stand-in is exactly what a new debootstrap would make today,
less the package updates since, which the build's own `apt-get update` brings anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.docker_engine import Engine
from tests.netns import REPO_ROOT
from tests.tools import require_tool

STANDIN_VERSION = 1  # bump when the recipe below changes
SUITE = "bookworm"
PACKAGES = ("python3", "python3-pip", "ca-certificates")
CACHE_DIR = Path("/var/cache/pyovpn-tunnel")
HOST_CA_IN_IMAGE = "/etc/ssl/host-ca-bundle.crt"
_PIP_NETWORK_KEYS = {"index-url", "extra-index-url", "trusted-host", "proxy", "timeout",
                     "default-timeout", "retries"}


def default_base() -> str:
    """The BASE_IMAGE default in the Dockerfile (what a user builds on)."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", (REPO_ROOT / "Dockerfile").read_text(), re.M)
    if match is None:
        raise RuntimeError("the Dockerfile has no `ARG BASE_IMAGE=<default>`")
    return match.group(1)


def _host_mirrors() -> dict[str, str]:
    """Suite -> mirror URI for bookworm, -updates and -security, from the host's apt."""
    out = subprocess.run(["apt-cache", "policy"], capture_output=True, text=True,
                         timeout=60).stdout
    mirrors: dict[str, str] = {}
    for uri, suite in re.findall(rf"^\s*\d+ (\S+) ({SUITE}(?:-updates|-security)?)/main ",
                                 out, re.M):
        mirrors.setdefault(suite, uri)
    mirrors.setdefault(SUITE, "http://deb.debian.org/debian")
    return mirrors


def _host_apt_proxy() -> str:
    out = subprocess.run(["apt-config", "dump", "Acquire::http::Proxy"], capture_output=True,
                         text=True, timeout=30).stdout
    match = re.search(r'^Acquire::http::Proxy "([^"]+)";', out, re.M)
    return match.group(1) if match else ""


def _host_pip_settings() -> dict[str, str]:
    """The host's pip settings that a build can use (network servers only)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                         text=True, timeout=60).stdout
    settings: dict[str, str] = {}
    for line in out.splitlines():
        match = re.match(r"^[^.]*\.([\w-]+)='(.*)'$", line)
        if match is None or match.group(1) not in _PIP_NETWORK_KEYS:
            continue
        key, value = match.groups()
        if key in {"index-url", "extra-index-url"}:
            value = " ".join(u for u in value.split() if u.startswith(("http://", "https://")))
        if value:
            settings[key] = value
    return settings


def pip_build_args() -> list[str]:
    """The host's pip servers as the Dockerfile's PIP_* build arguments (any base image)."""
    settings = _host_pip_settings()
    args: list[str] = []
    for key in ("index-url", "extra-index-url", "trusted-host"):
        if key in settings:
            args += ["--build-arg", f"PIP_{key.upper().replace('-', '_')}={settings[key]}"]
    return args


def host_ca_bundle() -> Path:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      ssl.get_default_verify_paths().cafile,
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise RuntimeError("no CA bundle on this host to give the stand-in image")


def _pip_conf(settings: dict[str, str]) -> str:
    lines = ["[global]", f"cert = {HOST_CA_IN_IMAGE}",
             # Debian's python3 is "externally managed"; the image is ours to install into.
             "break-system-packages = true", "root-user-action = ignore"]
    lines += [f"{key} = {value}" for key, value in sorted(settings.items())]
    return "\n".join(lines) + "\n"


def _sources(mirrors: dict[str, str]) -> str:
    return "".join(f"deb {uri} {suite} main\n" for suite, uri in sorted(mirrors.items()))


def _safe_cache_dir() -> Path | None:
    """CACHE_DIR if only root can write it (created so), else None: build without a cache."""
    try:
        CACHE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = CACHE_DIR.stat()
    except OSError:
        return None
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return CACHE_DIR


def _debootstrap(root: Path, mirrors: dict[str, str], proxy: str, pip_conf: str,
                 ca_bundle: Path) -> None:
    env = {**os.environ, **({"http_proxy": proxy} if proxy else {})}
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
         str(root), mirrors[SUITE]],
        capture_output=True, text=True, timeout=900, env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    (root / "etc/apt/sources.list").write_text(_sources(mirrors))
    if proxy:
        (root / "etc/apt/apt.conf.d/01proxy").write_text(f'Acquire::http::Proxy "{proxy}";\n')
    shutil.copyfile(ca_bundle, root / HOST_CA_IN_IMAGE.lstrip("/"))
    shutil.copyfile(ca_bundle, root / "etc/ssl/certs/ca-certificates.crt")
    (root / "etc/pip.conf").write_text(pip_conf)
    # What debootstrap downloaded: not part of an image.
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)


def standin_base(engine: Engine, log: list[str], imported: list[str]) -> str:
    """Import (building it first unless cached) the stand-in; return its image name. Names
    this call imported into the engine are added to `imported` (for removal afterwards)."""
    mirrors = _host_mirrors()
    proxy = _host_apt_proxy()
    pip_conf = _pip_conf(_host_pip_settings())
    ca_bundle = host_ca_bundle()
    recipe = json.dumps({"version": STANDIN_VERSION, "suite": SUITE, "packages": PACKAGES,
                         "mirrors": mirrors, "proxy": proxy, "pip": pip_conf}, sort_keys=True)
    key = hashlib.sha256(recipe.encode() + ca_bundle.read_bytes()).hexdigest()[:16]
    name = f"tunnel-standin-{SUITE}:{key}"
    if engine.docker("image", "inspect", name, check=False).returncode == 0:
        log.append(f"stand-in base {name}: already in the engine")
        return name
    cache = _safe_cache_dir()
    tarball = cache / f"standin-{SUITE}-{key}.tar" if cache else None
    scratch = Path(tempfile.mkdtemp(prefix="tunnel-standin.", dir=cache))
    try:
        if tarball is None or not tarball.is_file():
            require_tool("debootstrap")
            _debootstrap(scratch / "root", mirrors, proxy, pip_conf, ca_bundle)
            built = scratch / "rootfs.tar"
            subprocess.run(["tar", "-C", str(scratch / "root"), "--numeric-owner", "-cf",
                            str(built), "."], check=True, timeout=300)
            if tarball is not None:
                for old in tarball.parent.glob(f"standin-{SUITE}-*.tar"):
                    if old != tarball:
                        old.unlink(missing_ok=True)  # an older recipe or CA bundle
                os.replace(built, tarball)  # atomic: a reader sees all of it or nothing
            else:
                tarball = built
            log.append(f"stand-in base {name}: debootstrap {SUITE} from {mirrors[SUITE]}")
        else:
            log.append(f"stand-in base {name}: cached {tarball}")
        engine.docker("import", str(tarball), name, timeout=300)
        imported.append(name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return name


def base_image(engine: Engine, log: list[str], imported: list[str]) -> str:
    """The default base if the engine has it or can pull it, else the stand-in."""
    default = default_base()
    if engine.docker("image", "inspect", default, check=False).returncode == 0:
        log.append(f"base {default}: in the engine")
        return default
    pull = engine.docker("pull", default, timeout=180, check=False)
    if pull.returncode == 0:
        log.append(f"base {default}: pulled")
        return default
    reason = (pull.stderr.strip().splitlines() or ["no output"])[-1]
    log.append(f"base {default}: cannot be pulled ({reason}); using a local stand-in")
    return standin_base(engine, log, imported)
