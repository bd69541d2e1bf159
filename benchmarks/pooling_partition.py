"""Does a trained E-Pool group every system's particles by complex, and what does a wrong grouping cost?

For each trained EGHN run directory given, the script loads the weights its ``result.json``
reports (``best.pt``), runs the model on a split of the run's own dataset and, for every system
of the split, compares the first pooling level's hard assignment (the argmax of each score row,
paper Eq. 8) with the system's rigid complexes (the connected components of its local edges):

* ``exact``: every complex lies in one cluster and no two complexes share one (the partition
  the connectivity loss of Eq. 16 is zero for, when the scores are hard);
* ``soft``: some particle's largest score is below 0.9 (its row is not saturated);
* ``patterns``: over the exactly pooled systems, how many different maps from complex size to
  cluster occur, and ``top_pattern_share``, the share of the most common one. A pooling that
  names its clusters by what each complex is (e.g. always the largest complex in cluster 0)
  has one pattern; one that picks the labels from anything else spreads over up to
  :math:`K!` of them (the labels do not change the prediction, since the coarse level treats
  its clusters alike);

together with the run's training regulariser (training loss minus training MSE, from its
``metrics.csv``) at every evaluation, and reports the per-system position MSE (in the data's
units, like the run's own test MSE) over the exactly pooled systems, over the others and over
all (the last is the run's test MSE on the full split). This separates two readings of a seed
that misses: its pooling mixes complexes on some systems and those systems carry the
error, or the error is spread over systems whose pooling is right.

Usage (one PyTorch thread; the runs' datasets must be where their configs say)::

    OMP_NUM_THREADS=1 python benchmarks/pooling_partition.py NAME=RUN_DIR [NAME=RUN_DIR ...]
        [--split test] [--max-graphs 2000] [--out FILE]

Written to ``FILE`` (JSON): one entry per ``NAME`` with the counts, the three MSEs and the
checkpoint's epoch, and the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import eghn
from eghn.nn.scatter import graph_mean
from eghn.train.runs import source_commit

__all__ = ["analyse_run", "complex_labels", "exact_partition", "main", "size_patterns", "summarise"]


def complex_labels(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Connected-component label of every node: the smallest node index in its component.

    Shapes:
        - edge_index: :math:`(2, E)`; output: :math:`(N,)`

    Example:
        >>> import torch
        >>> complex_labels(torch.tensor([[0, 1, 3, 4], [1, 2, 4, 3]]), 6).tolist()
        [0, 0, 0, 3, 3, 5]
    """
    labels = torch.arange(num_nodes, device=edge_index.device)
    if edge_index.numel() == 0:
        return labels
    src, dst = torch.cat([edge_index[0], edge_index[1]]), torch.cat([edge_index[1], edge_index[0]])
    while True:  # min-label propagation until nothing changes (at most the longest path)
        new = labels.scatter_reduce(0, dst, labels[src], reduce="amin")
        if torch.equal(new, labels):
            return labels
        labels = new


def exact_partition(scores: Tensor, labels: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Which systems' hard assignment is exactly their complexes.

    A system is exact when every particle's argmax cluster equals that of its complex's first
    particle and the complexes of the system have pairwise different argmax clusters.

    Shapes:
        - scores: :math:`(N, K)`, labels (:func:`complex_labels`) and batch: :math:`(N,)`
        - output: :math:`(G,)` booleans

    Example:
        >>> import torch
        >>> labels, batch = torch.tensor([0, 0, 2, 2, 4, 4, 6, 6]), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> S = torch.eye(2)[torch.tensor([0, 0, 1, 1, 1, 1, 1, 1])]  # graph 1 puts both complexes in one
        >>> exact_partition(S, labels, batch, 2).tolist()
        [True, False]
    """
    hard = scores.argmax(-1)
    whole = hard == hard[labels]  # every particle with its complex's first particle
    whole_per_graph = torch.ones(num_graphs, dtype=torch.bool, device=scores.device)
    whole_per_graph = whole_per_graph.scatter_reduce(0, batch, whole, reduce="amin")
    roots = (labels == torch.arange(labels.numel(), device=labels.device)).nonzero().flatten()
    n_complexes = torch.bincount(batch[roots], minlength=num_graphs)
    pairs = torch.unique(batch[roots] * scores.shape[1] + hard[roots])
    n_clusters_used = torch.bincount(pairs // scores.shape[1], minlength=num_graphs)
    return whole_per_graph & (n_clusters_used == n_complexes)


def size_patterns(scores: Tensor, labels: Tensor, batch: Tensor, systems: Tensor) -> Counter:
    """How often each map from complex size to hard cluster occurs over the chosen ``systems``
    (a boolean mask over the graphs, e.g. :func:`exact_partition`); a map is the sorted tuple of
    ``(complex size, cluster)`` pairs of a system.

    Example:
        >>> import torch
        >>> labels, batch = torch.tensor([0, 0, 2, 3, 3, 5]), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> S = torch.eye(2)[torch.tensor([1, 1, 0, 0, 0, 1])]  # graph 0: pair -> 1; graph 1: pair -> 0
        >>> sorted(size_patterns(S, labels, batch, torch.tensor([True, True])).items())
        [(((1, 0), (2, 1)), 1), (((1, 1), (2, 0)), 1)]
    """
    size, hard = torch.bincount(labels, minlength=labels.numel())[labels], scores.argmax(-1)
    out: Counter = Counter()
    for gi in torch.nonzero(systems).flatten().tolist():
        nodes = batch == gi
        out[tuple(sorted(set(zip(size[nodes].tolist(), hard[nodes].tolist()))))] += 1
    return out


@torch.no_grad()
def analyse_run(run_dir: str | Path, split: str = "test", max_graphs: int | None = None,
                batch_size: int = 500, checkpoint: str = "best") -> dict[str, Any]:
    """The partition record of one run directory (see the module docstring), with the weights of
    its ``best.pt`` or (``checkpoint="last"``) its ``last.pt``."""
    from eghn.train.collected import read_metrics
    from eghn.train.loop import build_datasets, build_model
    from eghn.train.rundir import load_weights
    from eghn.train.trained import read_run

    config, ckpt, state = read_run(run_dir, checkpoint=checkpoint)
    if config["model"]["name"] != "eghn":
        raise ValueError(f"{run_dir}: a run of model {config['model']['name']!r}, not eghn")
    ds = build_datasets(config, splits=(split,))[split]
    model = build_model(config, ds)
    load_weights(model, state["model"], ckpt, config, config)
    model.eval()
    scale2 = float(ds.length_scale) ** 2  # the model works in lengths divided by the run's scale
    n = len(ds) if max_graphs is None else min(max_graphs, len(ds))
    mse, exact, soft, patterns = [], [], [], Counter()
    for start in range(0, n, batch_size):
        g = ds.collate(list(range(start, min(n, start + batch_size))))
        if g.local_edge_index is None:
            raise ValueError(f"{run_dir}: the dataset has no local edges, so no complexes to compare with")
        out = model(g)
        S = out.aux["scores"][0]
        err = ((out.pos - g.target) ** 2).mean(-1) * scale2  # in the data's units, as the trainer reports
        mse.append(graph_mean(err, g.batch, g.num_graphs))
        labels = complex_labels(g.local_edge_index, g.pos.shape[0])
        exact.append(exact_partition(S, labels, g.batch, g.num_graphs))
        patterns += size_patterns(S, labels, g.batch, exact[-1])
        top = torch.full((g.num_graphs,), 1.0, dtype=S.dtype).scatter_reduce(0, g.batch, S.max(-1).values, "amin")
        soft.append(top < 0.9)
    mse_all, exact_all, soft_all = torch.cat(mse), torch.cat(exact), torch.cat(soft)

    metrics = Path(run_dir) / "metrics.csv"
    regulariser = ({str(int(row["epoch"])): row["train_loss"] - row["train_mse"] for row in read_metrics(metrics)}
                   if metrics.is_file() else {})

    def mean(mask: Tensor) -> float | None:
        return float(mse_all[mask].mean()) if bool(mask.any()) else None

    return {
        "run": str(run_dir), "split": split, "checkpoint": checkpoint, "systems": n, "epoch": int(state["epoch"]),
        "clusters": config["model"]["clusters"][0],
        "exact": int(exact_all.sum()), "not_exact": n - int(exact_all.sum()), "soft": int(soft_all.sum()),
        "patterns": len(patterns),
        "top_pattern_share": max(patterns.values()) / sum(patterns.values()) if patterns else None,
        "mse_exact": mean(exact_all), "mse_other": mean(~exact_all), "mse_all": float(mse_all.mean()),
        "mse_soft": mean(soft_all), "regulariser": regulariser,
    }


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Runs named ``GROUP_sSEED`` counted per ``GROUP``: how many there are, how many pooled every
    system exactly with a single size-to-cluster pattern (``by_complex``), and the mean of
    their test MSE.

    Example:
        >>> runs = {"a_s1": {"exact": 5, "systems": 5, "patterns": 1, "mse_all": 0.1},
        ...         "a_s2": {"exact": 3, "systems": 5, "patterns": 2, "mse_all": 0.3}}
        >>> summarise(runs)["a"]
        {'runs': 2, 'by_complex': 1, 'mse_all_mean': 0.2}
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, rec in runs.items():
        head, sep, seed = name.rpartition("_s")
        groups.setdefault(head if sep and seed.isdigit() else name, []).append(rec)
    return {name: {"runs": len(recs),
                   "by_complex": sum(r["exact"] == r["systems"] and r["patterns"] == 1 for r in recs),
                   "mse_all_mean": sum(r["mse_all"] for r in recs) / len(recs)}
            for name, recs in groups.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--max-graphs", type=int, default=None)
    ap.add_argument("--checkpoint", default="best", choices=["best", "last"],
                    help="the weights of best.pt (default) or of last.pt (the last evaluation)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    doc: dict[str, Any] = {
        "about": ("First pooling level of trained EGHN runs against the systems' complexes "
                  "(benchmarks/pooling_partition.py): exact = every complex in one cluster and no two "
                  "complexes in one; soft = some particle's largest score below 0.9; MSEs per system, "
                  "averaged over the systems of each kind."),
        "command": "python benchmarks/pooling_partition.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "eghn_version": eghn.__version__, "commit": source_commit(), "torch": torch.__version__,
        "machine": platform.machine(), "runs": {},
    }
    for spec in args.runs:
        name, sep, run_dir = spec.partition("=")
        if not sep or not name or not run_dir:
            ap.error(f"expected NAME=RUN_DIR, got {spec!r}")
        rec = analyse_run(run_dir, args.split, args.max_graphs, checkpoint=args.checkpoint)
        rec["run"] = Path(run_dir).name
        doc["runs"][name] = rec
        exact, other = ("-" if rec[k] is None else f"{rec[k]:.4f}" for k in ("mse_exact", "mse_other"))
        print(f"{name}: epoch {rec['epoch']}, exact {rec['exact']}/{rec['systems']}, soft {rec['soft']}, "
              f"{rec['patterns']} size-to-cluster patterns; "
              f"MSE exact {exact}, other {other}, all {rec['mse_all']:.4f}")
    doc["groups"] = summarise(doc["runs"])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
