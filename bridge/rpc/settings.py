"""Transport settings of the server (DESIGN §6): the transport options and the token.

The options themselves (:class:`~bridge.options.TransportOptions`, with their ranges, CLI
flags and help) live in :mod:`bridge.options`, one source for the embedding API and the
command line; they are re-exported here for the RPC layer. Kept apart from the server so
the composition root can build them without importing the connection machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.options import MAX_PORT, MIN_OUTBOUND_CAP, InvalidSettingError, TransportOptions

__all__ = ["MAX_PORT", "MIN_OUTBOUND_CAP", "InvalidSettingError", "ServerSettings", "TransportOptions"]


@dataclass(kw_only=True)
class ServerSettings(TransportOptions):
    """Everything :class:`BridgeServer` needs: the transport options and the token.

    Attributes:
        token: the bearer token every client must present (``[A-Za-z0-9_-]{32,}``).
    """

    token: str = field(repr=False)
