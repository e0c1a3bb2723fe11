"""An asyncio UDP tunnel that speaks OpenVPN 2.6's UDP wire protocol."""

__version__ = "0.1.0"
