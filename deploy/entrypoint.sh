#!/bin/sh
# Entrypoint of the tunnel image (docker-compose.yml).
#
#   entrypoint.sh init-pki              make a throwaway PKI in $PKI_DIR unless one is there:
#                                       CA, server, clients `client` (ours) and `stock-client`
#                                       (the stock openvpn service)
#   entrypoint.sh traffic               wait for the tunnel, then ping + iperf3 through it
#   entrypoint.sh tunnel|openvpn ARGS   wait for the PKI, then exec the peer
#   entrypoint.sh COMMAND [ARGS...]     exec COMMAND (e.g. `iperf3 -s`: it needs no PKI)
#
# The PKI lives in a volume shared by the containers; the one-shot `pki` service fills it on
# first start, and later starts reuse it, so the certificates survive `docker compose down`
# (remove them with `docker compose down -v`).
set -eu

PKI_DIR=${PKI_DIR:-/pki}
SERVER_TUN_ADDR=${SERVER_TUN_ADDR:-10.8.0.1}
IPERF_SECONDS=${IPERF_SECONDS:-10}
WAIT_SECONDS=${WAIT_SECONDS:-60}

log() { echo "entrypoint: $*" >&2; }

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND every second.
wait_until() {
  limit=$1 what=$2
  shift 2
  i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge "$limit" ]; then
      log "gave up after ${limit} s waiting for $what"
      exit 1
    fi
    sleep 1
  done
}

case ${1:-} in
  init-pki)
    if [ -f "$PKI_DIR/ca.crt" ] && [ -f "$PKI_DIR/stock-client.key" ]; then
      log "PKI already in $PKI_DIR, keeping it"
      exit 0
    fi
    # --overwrite: a PKI from an older image (without stock-client) is replaced whole.
    exec tunnel pki "$PKI_DIR" --client client --client stock-client --overwrite
    ;;
  traffic)
    # The client's healthcheck already pinged through the tunnel; wait again anyway so this
    # also works when started on its own.
    wait_until "$WAIT_SECONDS" "the tunnel to $SERVER_TUN_ADDR" ping -c 1 -W 1 "$SERVER_TUN_ADDR"
    wait_until "$WAIT_SECONDS" "the iperf3 server" iperf3 -c "$SERVER_TUN_ADDR" -t 1
    log "through the tunnel from $(ip -4 -o addr show dev tun0 | awk '{print $4}') to $SERVER_TUN_ADDR"
    ping -n -c 5 -i 0.2 "$SERVER_TUN_ADDR"
    exec iperf3 -c "$SERVER_TUN_ADDR" -t "$IPERF_SECONDS" -f m
    ;;
  "")
    log "usage: entrypoint.sh init-pki | traffic | COMMAND [ARGS...]"
    exit 2
    ;;
  tunnel|openvpn)
    wait_until "$WAIT_SECONDS" "the PKI in $PKI_DIR" test -f "$PKI_DIR/stock-client.key"
    exec "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
