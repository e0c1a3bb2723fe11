"""asyncio adapters: the layer that owns file descriptors and sockets.

`device` defines the packet-device interface the tunnel core reads from and writes to, and an
in-memory implementation for the demo and tests; `tun` is the Linux TUN device; `netlink`
configures a device (addresses, MTU, routes, link state) through rtnetlink.
"""
