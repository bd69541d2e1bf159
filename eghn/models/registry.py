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
    """Class decorator adding a model to the registry under ``name``.

    Example:
        >>> from torch import nn
        >>> from eghn.models.registry import get, register
        >>> @register("_hold_still")  # names starting with "_" stay out of the test batteries
        ... class HoldStill(nn.Module):
        ...     def __init__(self, node_dim: int, **unused):
        ...         super().__init__()
        ...     def forward(self, graph):
        ...         return graph.pos
        >>> type(get("_hold_still", node_dim=1)).__name__
        'HoldStill'
    """

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Names of all registered models, sorted.

    Example:
        >>> from eghn.models.registry import available
        >>> {"eghn", "egnn", "gmn", "tfn", "se3_transformer"} <= set(available())
        True
    """
    return sorted(set(_REGISTRY) | set(_LAZY))


def get_class(name: str) -> type[nn.Module]:
    """The class registered as ``name`` (``KeyError`` listing the known names otherwise).

    Example:
        >>> from eghn.models.registry import get_class
        >>> get_class("eghn").__name__, get_class("egnn").__name__
        ('EGHN', 'EGNN')
    """
    if name not in _REGISTRY and name in _LAZY:
        importlib.import_module(_LAZY[name])  # registers itself
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available())}") from None


def get(name: str, **config) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``config``.

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models import get
        >>> torch.manual_seed(0) and None
        >>> model = get("egnn", node_dim=1, hidden=8, layers=2)
        >>> ring = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
        >>> tuple(model(Graph(pos=torch.randn(4, 3), vel=torch.randn(4, 3), edge_index=ring)).pos.shape)
        (4, 3)
    """
    return get_class(name)(**config)
