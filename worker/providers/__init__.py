"""Providers: one class per upstream protocol, behind :class:`Provider`, picked by :class:`ProviderRegistry`."""

from worker.providers._base import NO_STATE, Provider, ProviderOutput, SessionState, UpstreamCall
from worker.providers._registry import ProviderRegistry, default_registry

__all__ = (
    "NO_STATE",
    "Provider",
    "ProviderOutput",
    "ProviderRegistry",
    "SessionState",
    "UpstreamCall",
    "default_registry",
)
