"""Measure how closely ``EGHN.released`` follows the authors' released model, for the Fidelity page.

Writes ``docs/results/fidelity_checks.json`` with

* ``params``: parameter counts of ``EGHN.released`` (motion capture and the released MD
  settings), ``EGHN.single_level`` and the shipped motion-capture configurations, and the
  authors' count stored in the test fixture;
* ``fixture``: eghn against the numbers of ``tests/fixtures/authors_eghn_mocap_run.npz`` (the
  authors' seeded model and its outputs on one batch, see ``tests/test_released.py``): the
  largest absolute difference of the predicted positions in float32 and float64, the largest
  position, the difference between the authors' own float32 and float64 outputs, and the
  differences of the cut loss;
* ``gradients`` (only with ``--authors DIR``, a checkout of github hanjq17/EGHN run unmodified
  from outside this repository): both models in float64 with the same weights on a batch of
  100 Run training samples built by eghn's data pipeline, the largest absolute difference of the
  predicted positions and the largest relative difference of the gradient of MSE + cut loss
  with respect to any parameter.

Usage::

    python docs/scripts/measure_fidelity.py [--authors DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from side_by_side import authors_model, build_workload, provenance, released_model, write_result  # noqa: E402
from test_released import _fixture  # noqa: E402

from eghn.models import EGHN, authors_key_map, load_authors_state_dict  # noqa: E402
from eghn.train.config import load_config  # noqa: E402
from eghn.train.loop import build_datasets, build_model  # noqa: E402


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_counts(fixture) -> dict[str, int]:
    out = {
        "released_mocap": n_params(EGHN.released(2, 2, 2, clusters=5)),
        "authors_mocap": int(fixture["n_params"]),
        "single_level_mocap": n_params(EGHN.single_level(1, 2, 0, clusters=5)),
        "released_md": n_params(EGHN.released(2, 2, 2, clusters=20, hidden=128, layers=4, pool_layers=4,
                                              unpool_layers=2)),
    }
    for key, name, protocol in (("config_run_eghn_paper", "mocap/run_eghn", "paper"),
                                ("config_run_eghn_released", "mocap/run_eghn", "released"),
                                ("config_run_eghn_released_architecture", "mocap/run_eghn_released", "released")):
        config = load_config(name, [f'protocol="{protocol}"'])
        train = build_datasets(config, splits=("train",))["train"]
        out[key] = n_params(build_model(config, train))
    return out


def fixture_differences() -> dict[str, float]:
    z, weights, g = _fixture()
    model = load_authors_state_dict(EGHN.released(2, 2, 2, clusters=5), weights).eval()
    with torch.no_grad():
        out32 = model(g)
        out64 = model.double()(g.to(dtype=torch.float64))
    theirs32, theirs64 = torch.from_numpy(z["out_pos"]), torch.from_numpy(z["out_pos_float64"])
    return {
        "float32_max_abs_diff": float((out32.pos - theirs32).abs().max()),
        "largest_position": float(theirs32.abs().max()),
        "authors_float32_vs_float64": float((theirs32.double() - theirs64).abs().max()),
        "float32_cut_loss_diff": abs(float(out32.aux["connectivity_loss"]) - float(z["cut_loss"])),
        "float64_max_abs_diff": float((out64.pos - theirs64).abs().max()),
        "float64_cut_loss_diff": abs(float(out64.aux["connectivity_loss"]) - float(z["cut_loss_float64"])),
    }


def gradient_differences(authors_dir: str) -> dict[str, float]:
    """Both models in float64 with the same weights on 100 Run samples: positions and gradients."""
    torch.set_default_dtype(torch.float64)
    try:
        work = build_workload("mocap")
        work["common"] = work["common"].to(dtype=torch.float64)
        # the authors' node features from the float64 inputs: y divided by its batch maximum, as
        # their script does and as EGHN.released(batch_max_features=[1]) does inside the model
        h = work["common"].h.clone()
        h[:, 1] = h[:, 1] / h[:, 1].max()
        work["authors_h"] = h
        authors = authors_model(work, authors_dir)
        ours = load_authors_state_dict(released_model(work), authors.state_dict())
        g = work["common"]
        n = int(g.nodes_per_graph()[0])
        lei = g.local_edge_index
        authors.zero_grad()
        x, _, _ = authors(g.pos, work["authors_h"], g.edge_index, g.edge_attr, [lei[0], lei[1]], g.local_edge_attr,
                          n_node=n, v=g.vel, node_mask=None, node_nums=None)
        (((x - g.target) ** 2).mean() + authors.cut_loss).backward()
        out = ours(g)
        (((out.pos - g.target) ** 2).mean() + out.aux["connectivity_loss"]).backward()
        # the authors' gradients in eghn's layout: loaded like weights (same renaming and
        # column order), into a model of the same shape
        reached = {name for name, p in authors.named_parameters() if p.grad is not None}
        theirs = {name: (p.grad if p.grad is not None else torch.zeros_like(p))
                  for name, p in authors.state_dict(keep_vars=True).items()}
        holder = load_authors_state_dict(released_model(work), theirs)
        names, held = authors_key_map(ours), dict(holder.named_parameters())
        rel, unused = 0.0, 0
        for name, p in ours.named_parameters():
            if p.grad is None or names[name] not in reached:  # the loss does not reach it (a last h update)
                if (p.grad is None) != (names[name] not in reached):
                    raise SystemExit(f"{name}: a gradient in one model only")
                unused += 1
                continue
            a = held[name].detach()
            rel = max(rel, float((p.grad - a).norm() / a.norm().clamp_min(1e-300)))
        return {"graphs": g.num_graphs, "float64_max_abs_position_diff": float((out.pos - x).detach().abs().max()),
                "float64_max_relative_gradient_diff": rel, "parameters_without_gradient": unused}
    finally:
        torch.set_default_dtype(torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", help="checkout of github hanjq17/EGHN (for the gradient comparison)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "fidelity_checks.json"))
    args = ap.parse_args()
    z = np.load(ROOT / "tests" / "fixtures" / "authors_eghn_mocap_run.npz")
    result = provenance()
    result["command"] = f"python docs/scripts/measure_fidelity.py{' --authors DIR' if args.authors else ''}"
    result["params"] = parameter_counts(z)
    result["fixture"] = fixture_differences()
    if args.authors:
        result["gradients"] = gradient_differences(args.authors)
    write_result(Path(args.out), result)
    print(json.dumps({k: result[k] for k in ("params", "fixture", "gradients") if k in result}, indent=1))


if __name__ == "__main__":
    main()
