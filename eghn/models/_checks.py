"""Argument checks for the model constructors: clear errors instead of silent coercion.

``int(2.5)`` is 2 and ``int(True)`` is 1; a model built from a config or a notebook must refuse
such values with a message that names the argument, rather than build something else or fail
deep inside a layer.

Example:
    >>> check_clusters([4, 2])
    [4, 2]
    >>> check_clusters([2.5])
    Traceback (most recent call last):
    ...
    ValueError: clusters must be a sequence of positive integers (one per level), got [2.5]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["check_clusters", "check_int", "check_number"]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) ``>= low``; else ``ValueError``."""
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, low: float = 0.0, *, strict: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number ``>= low`` (``> low`` when ``strict``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}")
    return float(value)


def check_clusters(clusters: Any) -> list[int]:
    """The cluster counts :math:`K_1, K_2, \\dots`: an int, or a sequence of ints (not bools or strings)."""
    if _is_int(clusters):
        clusters = [clusters]
    if (isinstance(clusters, (str, bytes)) or not isinstance(clusters, Sequence) or not clusters
            or not all(_is_int(k) and k >= 1 for k in clusters)):
        raise ValueError(f"clusters must be a sequence of positive integers (one per level), got {clusters!r}")
    return [int(k) for k in clusters]
