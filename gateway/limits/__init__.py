"""Edge limits of one worker: concurrency, connections, connections per address, request rate.

Built once per server from ``Config`` and held by ``ServerContext``: ``RequestLimits`` is
asked by the stream layer, ``ConnectionLimits`` by the connections and the listeners. See
docs/limits.md for what each option does and why it works the way it does.
"""

from gateway.limits.connections import AddressConnections, ConnectionGate, ConnectionLimits, ConnectionSlot
from gateway.limits.requests import ConcurrencyLimit, RateLimiter, Refusal, RequestLimits

__all__ = [
    "AddressConnections",
    "ConcurrencyLimit",
    "ConnectionGate",
    "ConnectionLimits",
    "ConnectionSlot",
    "RateLimiter",
    "Refusal",
    "RequestLimits",
]
