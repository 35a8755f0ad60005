"""Providers: one class per upstream protocol, behind :class:`Provider`, picked by :class:`ProviderRegistry`."""

from worker.providers._base import Provider, ProviderOutput
from worker.providers._registry import ProviderRegistry, default_registry

__all__ = ("Provider", "ProviderOutput", "ProviderRegistry", "default_registry")
