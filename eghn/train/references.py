"""Reference MSEs printed beside a run's result, so that a newcomer sees what was learned.

Two kinds, both computed or looked up, never typed: trivial baselines (:mod:`eghn.data.baselines`)
on the run's own test split -- linear extrapolation :math:`x_T = x_0 + t\\,v_0` with :math:`t`
fitted on its training split (M-complex, motion capture and protein MD) and holding still,
:math:`x_T = x_0` (motion capture and protein MD) -- and the paper's published number named by the config's
top-level ``paper_reference = "tableN/ROW/COLUMN"`` (from ``eghn/results/paper.json``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["Reference", "paper_number", "reference_mses"]


class Reference(NamedTuple):
    """One reference MSE: ``key`` (``"linear_extrapolation"``, ``"hold_still"`` or ``"paper"``),
    a readable ``label``, the ``mse`` in the data's units, and the fitted ``t`` of a linear
    extrapolation (None otherwise).

    Example:
        >>> from eghn.train.references import Reference
        >>> ref = Reference("hold_still", "hold still, x_T = x_0", 0.25)
        >>> ref.key, ref.mse, ref.t
        ('hold_still', 0.25, None)
    """

    key: str
    label: str
    mse: float
    t: float | None = None


def paper_number(ref: str) -> tuple[float, str]:
    """``(MSE, description)`` of ``"tableN/ROW/COLUMN"`` in the paper's tables (unscaled MSE).

    Example:
        >>> from eghn.train.references import paper_number
        >>> from eghn.train.reproduce import paper_results
        >>> table = paper_results()["table1"]
        >>> row = next(iter(table["rows"]))
        >>> column = next(iter(table["rows"][row]))
        >>> value, label = paper_number(f"table1/{row}/{column}")
        >>> value > 0, label.endswith("(paper Table 1)")
        (True, True)
    """
    from .reproduce import paper_results

    try:
        table, row, column = ref.split("/", 2)
        t = paper_results()[table]
        value = t["rows"][row][column]
    except (ValueError, KeyError) as e:
        raise KeyError(f"paper_reference {ref!r} names no published number ({e})") from None
    return float(value) * float(t.get("scale", 1.0)), f"{row}, {column} (paper {table.replace('table', 'Table ')})"


def reference_mses(config: Mapping[str, Any], split: str = "test") -> list[Reference]:
    """The references of the run described by ``config`` on its ``split`` (empty when none
    applies). A linear extrapolation's :math:`t` is always fitted on the training split; the
    paper's number is a reference of the test split only.

    On another split the references say how much the data move there: a model that beats them
    on the validation split but not on the test split meets test frames unlike its training
    frames (see the Table 3 analogue on the Results page).

    Example:
        >>> from eghn.train.references import reference_mses
        >>> reference_mses({"data": {"name": "arrays"}})  # no reference applies to your own arrays
        []
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    out: list[Reference] = []
    name = config["data"]["name"]
    splits = tuple(dict.fromkeys(("train", split)))
    if name == "mcomplex":
        from ..data.mcomplex import linear_extrapolation_baseline
        from .loop import build_datasets

        ds = build_datasets(config, splits=splits, raw=True)
        t, mse = linear_extrapolation_baseline(ds["train"], ds[split])
        out.append(_linear_reference(t, mse))
    elif name == "mocap":  # the samples' (S, 31, 3) arrays
        from .loop import build_datasets

        ds = build_datasets(config, splits=splits, raw=True)
        out += _array_references(*((d.pos, d.vel, d.target) for d in (ds["train"], ds[split])))
    elif name == "protein":  # one graph per frame, the same atoms in each: stack them to (S, N, 3)
        import torch

        from .loop import build_datasets

        ds = build_datasets(config, splits=splits)
        out += _array_references(*([torch.stack([getattr(g, k) for g in ds[s]]).numpy()
                                    for k in ("pos", "vel", "target")] for s in ("train", split)))
    ref = (config.get("paper_reference") or "") if split == "test" else ""
    if ref:
        value, what = paper_number(ref)
        out.append(Reference("paper", f"the paper's {what}", value))
    return out


def _linear_reference(t: float, mse: float) -> Reference:
    return Reference("linear_extrapolation",
                     f"linear extrapolation x_T = x_0 + {t:.3g} v_0 (fitted on the training split)", mse, t)


def _array_references(train: Sequence[Any], test: Sequence[Any]) -> list[Reference]:
    """Holding still and linear extrapolation from ``(pos, vel, target)`` arrays of shape (S, N, 3):
    :math:`t` fitted on ``train``, both MSEs on ``test``."""
    from ..data.baselines import fit_linear_extrapolation, hold_still_mse, linear_extrapolation_mse

    t = fit_linear_extrapolation(*train)
    return [Reference("hold_still", "hold still, x_T = x_0", hold_still_mse(test[0], test[2])),
            _linear_reference(t, linear_extrapolation_mse(t, *test))]
