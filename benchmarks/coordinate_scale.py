"""What EGHN does at coordinate scales far from 1, with and without standardised lengths.

One fully connected system of 12 particles (positions drawn from N(0, s^2 I), unit
velocities, one constant node feature), EGHN with the configuration of the M-complex
experiments (``EGHN.single_level(1, 0, 0, clusters=3)``, seed 0, as initialised). For every
scale ``s`` and dtype it records:

* ``raw``: the bare model on the coordinates as given. ``finite`` or ``error`` (EGHN raises
  ``FloatingPointError`` instead of returning NaN/inf) and the largest displacement it
  predicts, relative to ``s`` (a fresh model moves particles by about 0.1 of the system's
  extent at ``s = 1``);
* ``standardised``: the same system divided by its length scale (RMS distance from the
  centroid, :func:`eghn.data.units.rms_extent`, the statistic of
  :func:`eghn.data.length_scale`), the prediction multiplied back; the relative
  displacement and the largest relative equivariance error (rotations, reflections,
  translations of 100 s, permutations).

Writes a CSV (default ``benchmarks/results/coordinate_scale.csv``), shown in the
documentation's page on coordinate units::

    python benchmarks/coordinate_scale.py [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import torch

from eghn.data import Graph, standardize_graph
from eghn.data.units import rms_extent
from eghn.models import EGHN
from eghn.testing import equivariance_error

SCALES = (1e-3, 1.0, 10.0, 30.0, 100.0, 1e3, 1e4, 1e8)


def system(s: float, dtype: torch.dtype, n: int = 12) -> Graph:
    gen = torch.Generator().manual_seed(1)
    pos = torch.randn(n, 3, generator=gen, dtype=torch.float64) * s
    vel = torch.randn(n, 3, generator=gen, dtype=torch.float64) * s / 10
    idx = torch.arange(n)
    row, col = idx.repeat_interleave(n), idx.repeat(n)
    ei = torch.stack([row[row != col], col[row != col]])
    return Graph(pos=pos, vel=vel, h=torch.ones(n, 1, dtype=torch.float64), edge_index=ei,
                 local_edge_index=ei).to(dtype=dtype)


def measure(s: float, dtype: torch.dtype) -> dict[str, object]:
    torch.manual_seed(0)
    model = EGHN.single_level(1, 0, 0, clusters=3).to(dtype).eval()
    g = system(s, dtype)
    row: dict[str, object] = {"scale": f"{s:g}", "dtype": str(dtype).removeprefix("torch.")}
    with torch.no_grad():
        try:
            out = model(g).pos
            row["raw"] = "finite"
            row["raw_move"] = f"{float((out - g.pos).abs().max()) / s:.3g}"
        except FloatingPointError:
            row["raw"] = "error (FloatingPointError)"
            row["raw_move"] = "-"
        unit = rms_extent(g)

        def fn(gr: Graph) -> torch.Tensor:
            return model(standardize_graph(gr, unit)).pos * unit

        out = fn(g)
        row["standardised_move"] = f"{float((out - g.pos).abs().max()) / s:.3g}"
    err = equivariance_error(fn, g, translation_scale=100 * s)
    worst = max(err.values()) if not any(math.isnan(v) for v in err.values()) else math.nan
    row["standardised_equivariance_error"] = f"{worst:.1e}"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "coordinate_scale.csv")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [measure(s, dt) for dt in (torch.float32, torch.float64) for s in SCALES]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(r)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
