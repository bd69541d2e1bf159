"""Registry of models by name, so that configuration files can select them.

Every registered class is constructed as ``cls(node_dim=..., edge_dim=..., **config)`` and
maps a :class:`~eghn.data.Graph` to a :class:`~eghn.models.base.ModelOutput`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

__all__ = ["available", "get", "get_class", "register"]

_REGISTRY: dict[str, type[nn.Module]] = {}

# models built on e3nn, imported on first use: e3nn pulls in torch's compiler stack, which
# costs seconds of start-up and ~75 MB of memory in every process that never uses them
_LAZY: dict[str, str] = {"tfn": "eghn.models.tfn", "se3_transformer": "eghn.models.se3_transformer"}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a model to the registry under ``name``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(set(_REGISTRY) | set(_LAZY))


def get_class(name: str) -> type[nn.Module]:
    """The class registered as ``name`` (``KeyError`` listing the known names otherwise)."""
    if name not in _REGISTRY and name in _LAZY:
        importlib.import_module(_LAZY[name])  # registers itself
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available())}") from None


def get(name: str, **config) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``config``."""
    return get_class(name)(**config)
