# The tunnel in a container: `tunnel server|client --config FILE` plus the tools the
# docker-compose.yml topology uses (ip for the TUN device, ping and iperf3 for traffic).
# Debian bookworm's Python 3.11, as on the test machines.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 iputils-ping iperf3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The package first, the configs after: editing a config does not reinstall the package.
COPY pyproject.toml README.md ./
COPY core ./core
COPY tunnel ./tunnel
RUN pip install --no-cache-dir . && rm -rf /src

COPY deploy/ /deploy/
RUN chmod +x /deploy/entrypoint.sh
WORKDIR /
ENTRYPOINT ["/deploy/entrypoint.sh"]
