"""OpenVPN's management interface (doc/management-notes.txt) on the tunnel's event loop."""

from tunnel.app.management.host import AuthDecision, ByteCount, ManagementHost, Unsupported
from tunnel.app.management.server import Management, ManagementError

__all__ = ["AuthDecision", "ByteCount", "Management", "ManagementError", "ManagementHost",
           "Unsupported"]
