"""Reference MSEs printed beside a run's result, so that a newcomer sees what was learned.

Two kinds, both computed or looked up, never typed: a trivial baseline fitted on the run's own
training split and evaluated on its test split (for M-complex, linear extrapolation
:math:`x_T = x_0 + t\\,v_0`), and the paper's published number named by the config's top-level
``paper_reference = "tableN/ROW/COLUMN"`` (from ``eghn/results/paper.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["paper_number", "reference_mses"]


def paper_number(ref: str) -> tuple[float, str]:
    """``(MSE, description)`` of ``"tableN/ROW/COLUMN"`` in the paper's tables (unscaled MSE)."""
    from .reproduce import paper_results

    try:
        table, row, column = ref.split("/", 2)
        t = paper_results()[table]
        value = t["rows"][row][column]
    except (ValueError, KeyError) as e:
        raise KeyError(f"paper_reference {ref!r} names no published number ({e})") from None
    return float(value) * float(t.get("scale", 1.0)), f"{row}, {column} (paper {table.replace('table', 'Table ')})"


def reference_mses(config: Mapping[str, Any]) -> list[tuple[str, float]]:
    """``[(label, MSE)]`` for the run described by ``config`` (empty when none applies)."""
    out: list[tuple[str, float]] = []
    if config["data"]["name"] == "mcomplex":
        from ..data.mcomplex import linear_extrapolation_baseline
        from .loop import build_datasets

        ds = build_datasets(config, splits=("train", "test"), raw=True)
        t, mse = linear_extrapolation_baseline(ds["train"], ds["test"])
        out.append((f"linear extrapolation x_T = x_0 + {t:.3g} v_0 (fitted on the training split)", mse))
    ref = config.get("paper_reference") or ""
    if ref:
        value, what = paper_number(ref)
        out.append((f"the paper's {what}", value))
    return out
