"""Figures written next to the results: the learning curve of a run and a reproduced table.

``eghn train`` writes ``learning_curve.png`` into the run directory and ``eghn reproduce``
writes ``<table>.png`` beside ``<table>.md``. matplotlib is optional at run time: without it,
:func:`write_learning_curve` and :func:`write_table_figure` return ``None`` and say so through
``echo``, and training is unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["learning_curve", "table_figure", "write_learning_curve", "write_table_figure"]

_NO_MATPLOTLIB = "matplotlib is not installed; {what} skipped (pip install matplotlib)"


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _finite(values: Sequence[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        out.append(f)
    return out


def learning_curve(history: Sequence[Mapping[str, Any]], *, title: str = "", unit: str = "",
                   references: Mapping[str, float] | None = None):
    """Figure of training, validation and test MSE against the epoch (the training loss, which
    adds the connectivity term, is left out so that the curves share one scale).

    Args:
        history: evaluation rows of a run (``RunResult.history`` or ``metrics.csv``): ``epoch``,
            ``train_mse``, ``val_mse`` and optionally ``test_mse`` and ``best_epoch``.
        title: figure title, e.g. the run's name.
        unit: unit of the MSE for the axis label, e.g. ``"Å²"``; empty for data without units.
        references: horizontal reference lines, ``{label: MSE}`` (e.g. a baseline's error).

    Returns:
        a :class:`matplotlib.figure.Figure` (not registered with pyplot; needs matplotlib).

    Example:
        >>> from eghn.train.plots import learning_curve
        >>> history = [{"epoch": 5, "train_mse": 0.4, "val_mse": 0.5, "test_mse": 0.55, "best_epoch": 5},
        ...            {"epoch": 10, "train_mse": 0.2, "val_mse": 0.3, "test_mse": 0.32, "best_epoch": 10}]
        >>> fig = learning_curve(history, title="demo", unit="Å²", references={"no motion": 0.6})
        >>> ax = fig.axes[0]
        >>> ax.get_title(), ax.get_ylabel(), [line.get_label() for line in ax.get_lines()][:3]
        ('demo', 'MSE (Å²)', ['training MSE', 'validation MSE', 'test MSE'])
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [int(row["epoch"]) for row in history]
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    for key, label, style in (("train_mse", "training MSE", dict(color="0.55", ls="--")),
                              ("val_mse", "validation MSE", dict(color="tab:blue")),
                              ("test_mse", "test MSE", dict(color="tab:red", alpha=0.8))):
        values = _finite(row.get(key) for row in history)
        if any(math.isfinite(v) for v in values):
            ax.plot(epochs, values, label=label, marker="o" if len(epochs) < 15 else None, ms=3, **style)
    if history and "best_epoch" in history[-1]:
        best = int(float(history[-1]["best_epoch"]))
        if best > 0:
            ax.axvline(best, color="tab:green", lw=1, ls=":", label=f"best validation epoch ({best})")
    for k, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, color=f"C{k + 4}", lw=1, ls="-.", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"MSE ({unit})" if unit else "MSE")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    return fig


def write_learning_curve(run_dir: str | Path, history: Sequence[Mapping[str, Any]], *, title: str = "",
                         unit: str = "", references: Mapping[str, float] | None = None,
                         echo: Callable[[str], None] = print) -> Path | None:
    """Save :func:`learning_curve` as ``run_dir/learning_curve.png``; ``None`` without matplotlib.

    Example:
        >>> import tempfile
        >>> from eghn.train.plots import write_learning_curve
        >>> history = [{"epoch": 1, "train_mse": 0.4, "val_mse": 0.5}, {"epoch": 2, "train_mse": 0.2, "val_mse": 0.3}]
        >>> path = write_learning_curve(tempfile.mkdtemp(), history)
        >>> path.name, path.stat().st_size > 0
        ('learning_curve.png', True)
        >>> write_learning_curve(tempfile.mkdtemp(), []) is None  # nothing to draw
        True
    """
    if not history:
        return None
    if not _have_matplotlib():
        echo(_NO_MATPLOTLIB.format(what="learning_curve.png"))
        return None
    fig = learning_curve(history, title=title, unit=unit, references=references)
    path = Path(run_dir) / "learning_curve.png"
    fig.savefig(path, dpi=120)
    return path


def table_figure(title: str, rows: Sequence[str], columns: Sequence[str],
                 measured: Mapping[tuple[str, str], tuple[float, float, int]],
                 published: Mapping[tuple[str, str], float], *, unit: str = "", note: str = ""):
    """Horizontal bars of measured (mean, with the standard deviation over seeds when there are
    several) beside published test MSE, one panel per column of the table, on a linear axis.

    Args:
        title: the table's title.
        rows, columns: row and column labels in table order.
        measured: ``{(row, column): (mean, std, n_seeds)}`` in the unit of ``unit``.
        published: ``{(row, column): value}`` in the same unit.
        unit: axis unit, e.g. ``"x 1e-2"`` or ``"Å²"``.
        note: a line under the title (e.g. that quick numbers are not comparable).

    Example:
        >>> from eghn.train.plots import table_figure
        >>> fig = table_figure("Table 9", ["EGNN", "EGHN"], ["A"], {("EGHN", "A"): (0.9, 0.1, 3)},
        ...                    {("EGNN", "A"): 2.0, ("EGHN", "A"): 1.0}, unit="x 1e-2")
        >>> len(fig.axes), fig.axes[0].get_title(), fig.axes[0].get_xlabel()
        (1, 'A', 'test MSE (x 1e-2)')
    """
    import numpy as np
    from matplotlib.figure import Figure

    n = len(rows)
    fig = Figure(figsize=(4.2 * len(columns) + 1.5, 0.45 * n + 1.6), layout="constrained")
    axes = fig.subplots(1, len(columns), sharey=True, squeeze=False)
    y = np.arange(n)
    for ax, col in zip(axes[0], columns, strict=True):
        pub = [published.get((r, col), np.nan) for r in rows]
        mea = [measured.get((r, col), (np.nan, 0.0, 0)) for r in rows]
        ax.barh(y - 0.2, pub, 0.4, color="0.65", label="paper")
        ax.barh(y + 0.2, [m[0] for m in mea], 0.4, color="tab:red", label="measured",
                xerr=[m[1] if m[2] > 1 else 0.0 for m in mea], error_kw={"lw": 1})
        ax.set_title(col, fontsize=10)
        ax.set_xlabel(f"test MSE ({unit})" if unit else "test MSE")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlim(left=0)
    axes[0][0].set_yticks(y, rows, fontsize=9)
    axes[0][0].invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    return fig


def write_table_figure(path: str | Path, *args: Any, echo: Callable[[str], None] = print,
                       **kwargs: Any) -> Path | None:
    """Save :func:`table_figure` (same arguments) at ``path``; ``None`` without matplotlib.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.plots import write_table_figure
        >>> path = Path(tempfile.mkdtemp()) / "table9.png"
        >>> write_table_figure(path, "Table 9", ["EGHN"], ["A"], {("EGHN", "A"): (0.9, 0.0, 1)}, {}) == path
        True
        >>> path.stat().st_size > 0
        True
    """
    if not _have_matplotlib():
        echo(_NO_MATPLOTLIB.format(what=Path(path).name))
        return None
    fig = table_figure(*args, **kwargs)
    fig.savefig(path, dpi=120)
    return Path(path)
