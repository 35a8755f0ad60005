"""Providers: one class per upstream protocol, behind :class:`Provider`.

Which class serves a channel is decided by :class:`worker.registry.ProviderRegistry`, outside this package,
so that the tool bridge (which wraps providers) and the providers never import each other in a circle.
"""

from worker.providers._base import NO_STATE, Provider, ProviderOutput, SessionState, UpstreamCall

__all__ = (
    "NO_STATE",
    "Provider",
    "ProviderOutput",
    "SessionState",
    "UpstreamCall",
)
