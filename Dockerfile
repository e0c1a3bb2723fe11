# The tunnel in a container: `tunnel server|client --config FILE` plus the tools the
# docker-compose.yml topology uses (ip for the TUN device, ping and iperf3 for traffic, and
# Debian's stock openvpn for the interop peer).
#
# BASE_IMAGE: Debian bookworm's Python 3.11, as on the test machines. Override it only where no
# image registry is reachable, with a local image that has python3 and pip on bookworm
# (tests/e2e/compose_engine.py builds such a stand-in with debootstrap); what a user builds
# with the default is the image.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 iputils-ping iperf3 openvpn \
    && rm -rf /var/lib/apt/lists/*

# A PyPI mirror for the build, e.g. behind a firewall (`--build-arg PIP_INDEX_URL=...`); unset,
# pip uses PyPI. Build arguments are not kept in the image's environment.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST

WORKDIR /src
# The package first, the configs after: editing a config does not reinstall the package.
# setup.py builds tunnel._aead where the image has gcc and libssl-dev; this one has neither, so
# its data channel runs on cryptography (`tunnel --version` says which).
COPY pyproject.toml setup.py README.md ./
COPY core ./core
COPY tunnel ./tunnel
RUN pip install --no-cache-dir . && rm -rf /src

COPY deploy/ /deploy/
RUN chmod +x /deploy/entrypoint.sh
WORKDIR /
ENTRYPOINT ["/deploy/entrypoint.sh"]
