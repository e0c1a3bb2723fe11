"""The names OpenVPN itself knows: what `ignore-unknown-option` and FORWARD_COMPATIBLE may skip.

In stock OpenVPN, `ignore-unknown-option NAME`, `setenv opt NAME ...` and
`setenv FORWARD_COMPATIBLE 1` only soften options the binary does not recognise (options.c:
`add_option()` falls through to its final "Unrecognized option" branch); a recognised option is
always applied, whatever those say. So a config that skips `ns-cert-type server` through them on
a newer binary still checks the server's certificate on stock. We keep that meaning: a name in
this set is an option stock would apply, so when this tunnel does not implement it the file is
refused, never silently skipped (it could be a server-identity check, a wire-format change such
as `fragment`, or a credential such as `auth-user-pass`).

The set is every `streq(p[0], "...")` name in `add_option()` of OpenVPN 2.6 (tag v2.6_rc2,
d42b20512489) and master (3de926089fde, 2026-08-22) as built for Linux: the names only compiled
under `#ifdef _WIN32` (`block-outside-dns`, `ip-win32`, `register-dns`, ...) are unknown to a
Linux binary (2.6.14 says "Unrecognized option" for them) and stay skippable.
"""

from __future__ import annotations

__all__ = ["STOCK_OPTION_NAMES"]

STOCK_OPTION_NAMES: frozenset[str] = frozenset(
    """
    allow-compression allow-deprecated-insecure-static-crypto allow-pull-fqdn
    allow-recursive-routing askpass auth auth-gen-token auth-gen-token-secret auth-nocache
    auth-retry auth-token auth-token-user auth-user-pass auth-user-pass-optional
    auth-user-pass-verify bcast-buffers bind bind-dev block-ipv6 ca capath ccd-exclusive cd
    cert chroot cipher client client-cert-not-required client-config-dir client-connect
    client-crresponse client-disconnect client-nat client-to-client comp-lzo comp-noadapt
    compat-mode compat-names compress config connect-freq connect-freq-initial connect-retry
    connect-retry-max connect-timeout connection crl-verify cryptoapicert daemon data-ciphers
    data-ciphers-fallback dev dev-node dev-type dh dhcp-option disable disable-dco disable-occ
    dns dns-updown down down-pre duplicate-cn ecdh-curve echo engine errors-to-stderr
    explicit-exit-notify extra-certs fast-io float force-tls-key-material-export fragment
    genkey gremlin group hand-window hash-size help http-proxy http-proxy-option
    http-proxy-override http-proxy-retry http-proxy-timeout http-proxy-user-pass ifconfig
    ifconfig-ipv6 ifconfig-ipv6-pool ifconfig-ipv6-push ifconfig-noexec ifconfig-nowarn
    ifconfig-pool ifconfig-pool-persist ifconfig-push ifconfig-push-constraint
    ignore-unknown-option inactive ip-remote-hint ipchange iproute iroute iroute-ipv6
    keepalive key key-derivation key-direction keying-material-exporter learn-address link-mtu
    lladdr local log log-append lport machine-readable-output management management-client
    management-client-auth management-client-group management-client-user
    management-external-cert management-external-key management-forget-disconnect
    management-hold management-log-cache management-query-passwords management-query-proxy
    management-query-remote management-signal management-up-down mark max-clients
    max-packet-size max-routes max-routes-per-client memstats mktun mlock mode msg-channel
    mssfix mtu-disc mtu-dynamic mtu-test multihome mute mute-replay-warnings ncp-ciphers nice
    no-name-remapping no-replay nobind ns-cert-type opt-verify override-username parameter
    passtos peer-fingerprint peer-id persist-key persist-local-ip persist-remote-ip
    persist-tun ping ping-exit ping-restart ping-timer-rem pkcs11-cert-private pkcs11-id
    pkcs11-id-management pkcs11-pin-cache pkcs11-private-mode pkcs11-protected-authentication
    pkcs11-providers pkcs12 plugin port port-share preresolve prng proto proto-force
    protocol-flags providers pull pull-filter push push-continuation push-peer-info
    push-remove push-reset rcvbuf redirect-gateway redirect-private remap-usr1 remote
    remote-cert-eku remote-cert-ku remote-cert-tls remote-random remote-random-hostname
    reneg-bytes reneg-pkts reneg-sec replay-persist replay-window resolv-retry rmtun route
    route-delay route-gateway route-ipv6 route-ipv6-gateway route-method route-metric
    route-noexec route-nopull route-pre-down route-table route-up rport script-security secret
    server server-bridge server-ipv6 server-poll-timeout session-timeout setcon setenv
    setenv-safe shaper show-ciphers show-curves show-digests show-engines show-gateway
    show-groups show-pkcs11-ids show-tls single-session sndbuf socket-flags socks-proxy
    socks-proxy-retry stale-routes-check static-challenge status status-version
    suppress-timestamps syslog tcp-nodelay tcp-queue-limit test-crypto tls-auth
    tls-cert-profile tls-cipher tls-ciphersuites tls-client tls-crypt tls-crypt-v2
    tls-crypt-v2-max-age tls-crypt-v2-verify tls-exit tls-export-cert tls-groups tls-server
    tls-timeout tls-verify tls-version-max tls-version-min tmp-dir topology tran-window
    tun-ipv6 tun-mtu tun-mtu-extra tun-mtu-max txqueuelen udp-mtu up up-delay up-restart
    use-prediction-resistance user username-as-common-name verb verify-client-cert verify-hash
    verify-x509-name version vlan-accept vlan-pvid vlan-tagging writepid x509-track
    x509-username-field
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
