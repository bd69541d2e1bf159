"""What grows first when a deep EGHN diverges: every layer of every training step, recorded.

Trains one configuration through the real trainer (``eghn.train.train``, one thread) with
forward hooks on every EGNN layer, E-Pool EMMP, E-Pool and E-UnPool of the model, and records
for every training step:

* the loss terms (position MSE, connectivity loss) and the gradient norm before clipping;
* per EGNN layer (encoders, decoders): the largest squared distance it reads
  (``d2``, the raw invariant fed to :math:`\\phi_e`), the largest coordinate gain
  :math:`|\\phi_x(m_{ij})|` (``gain``) and the largest coordinate update
  :math:`\\max_i \\lVert x'_i - x_i\\rVert` (``dx``);
* per E-Pool EMMP layer: the largest coordinate update ``dx``;
* per pooling level: occupied clusters per graph (``occupancy``, mean over the batch), the share
  of saturated score rows (``saturation``), the largest log-ratio of two scores of a row
  (``logit_spread``) and the RMS of the cluster features;
* per parameter group (the first three parts of a parameter's name: ``encoders.0.1``,
  ``pools.0.score``, ...; under ``"update"``): the norm of the gradient the optimiser step
  received (after clipping, ``grad``) and of the change the step made to the weights (``step``).
  Adam divides each gradient by the root of its running second moment, so a group whose
  gradients were near zero for long (a saturated softmax) takes a large ``step`` from a small
  ``grad``: their ratio (``gain``) shows it.

With ``--detail-from STEP`` the per-layer statistics start at that step (a long run: only the
window around an event). The forward that produces a non-finite value is recorded too (it is the last step of a
diverged run). Writes ``docs/results/stability/trace_<name>.json``, drawn on the Training
stability page::

    OMP_NUM_THREADS=1 EGHN_DATA_DIR=... python benchmarks/stability_trace.py NAME CONFIG [--set KEY=VALUE ...]
    # the page's traces:
    python benchmarks/stability_trace.py L3_paper default --set "model.clusters=[6, 3, 2]" \\
        --set model.coord_message=paper --set seed=2
    python benchmarks/stability_trace.py L3_bounded default --set "model.clusters=[6, 3, 2]" --set seed=2
    python benchmarks/stability_trace.py default_s3 default --set seed=3
    python benchmarks/stability_trace.py default_eps_s3 default --set seed=3 --set train.adam_eps=1e-6
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import eghn.train.loop as loop
from eghn.nn.egnn import EGNNLayer
from eghn.nn.emmp import EMMP
from eghn.nn.epool import EPool
from eghn.train.config import load_config
from eghn.train.machine import machine_record
from eghn.train.runs import source_commit
from eghn.train.stability import cluster_occupancy

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "stability"


def _r(x: float) -> float:
    return float(f"{x:.4g}") if math.isfinite(x) else (None if math.isnan(x) else x)  # JSON: NaN -> null


def _max(t: torch.Tensor) -> float:
    t = t.detach()
    return float(t.abs().max()) if t.numel() else 0.0


def _norm(tensors: list[torch.Tensor]) -> float:
    """The Euclidean norm of a list of tensors taken as one vector (0 for an empty list)."""
    return math.sqrt(sum(float(t.detach().pow(2).sum()) for t in tensors))


class Recorder:
    """Forward hooks on every layer of an EGHN; one record per training forward."""

    def __init__(self, detail_from: int = 0) -> None:
        self.detail_from = detail_from
        self.steps: list[dict[str, Any]] = []
        self.grad: list[float] = []
        self.cur: dict[str, dict[str, float]] = {}
        self.layers: list[str] = []
        self.groups: dict[str, list[torch.nn.Parameter]] = {}
        self._before: dict[str, list[torch.Tensor]] = {}
        self._grads: dict[str, float] = {}

    def _put(self, name: str, **vals: float) -> None:
        if len(self.steps) < self.detail_from:
            return
        if name not in self.layers:
            self.layers.append(name)
        self.cur.setdefault(name, {}).update({k: _r(v) for k, v in vals.items()})

    def attach(self, model: torch.nn.Module) -> None:
        for name, mod in model.named_modules():
            if isinstance(mod, EGNNLayer):
                mod.register_forward_hook(self._egnn(name))
                mod.phi_x[-1].register_forward_hook(self._gain(name))
            elif isinstance(mod, EMMP):
                mod.register_forward_hook(self._emmp(name))
            elif isinstance(mod, EPool):
                mod.register_forward_hook(self._pool(name))
        model.register_forward_hook(self._top)
        for pname, param in model.named_parameters():
            self.groups.setdefault(".".join(pname.split(".")[:3]), []).append(param)
        # global optimiser hooks (the trainer builds its optimiser inside): removed by close()
        self.handles = [register_optimizer_step_pre_hook(self._pre_step),
                        register_optimizer_step_post_hook(self._post_step)]

    def close(self) -> None:
        """Remove the optimiser hooks (the forward hooks go with the model)."""
        for handle in getattr(self, "handles", []):
            handle.remove()

    def _stepping(self) -> bool:
        """Whether the optimiser step that follows the last recorded forward is recorded."""
        return bool(self.steps) and len(self.steps) > self.detail_from

    def _pre_step(self, optimizer, args, kwargs) -> None:
        if self._stepping():
            self._before = {g: [p.detach().clone() for p in ps] for g, ps in self.groups.items()}
            self._grads = {g: _norm([p.grad for p in ps if p.grad is not None]) for g, ps in self.groups.items()}

    def _post_step(self, optimizer, args, kwargs) -> None:
        if not self._before:
            return
        update = {}
        for g, ps in self.groups.items():
            step = _norm([p.detach() - b for p, b in zip(ps, self._before[g])])
            grad = self._grads[g]
            update[g] = {"grad": _r(grad), "step": _r(step), "gain": _r(step / grad) if grad > 0 else None}
        self.steps[-1]["update"] = update
        self._before = {}

    def _detail(self, m: torch.nn.Module) -> bool:
        return m.training and len(self.steps) >= self.detail_from

    def _egnn(self, name: str):
        def hook(m, args, out):
            if self._detail(m):
                x, ei = args[0].detach(), args[2]
                d2 = ((x[ei[0]] - x[ei[1]]) ** 2).sum(-1)
                self._put(name, d2=_max(d2), dx=_max((out[0] - x).norm(dim=-1)))
        return hook

    def _gain(self, name: str):
        def hook(m, args, out):
            if self._detail(m):
                self._put(name, gain=_max(out))
        return hook

    def _emmp(self, name: str):
        def hook(m, args, out):
            if self._detail(m):
                self._put(name, dx=_max((out[0] - args[0]).detach()[..., 0].norm(dim=-1)))
        return hook

    def _pool(self, name: str):
        def hook(m, args, out):
            if self._detail(m):
                occ, sat = cluster_occupancy(out.scores, args[4], args[3])  # batch: the graph of each row
                spread = out.log_scores.detach()
                spread = spread.amax(1) - spread.amin(1)  # log(largest / smallest score) of each row
                self._put(name, occupancy=float(occ), saturation=float(sat),
                          h_rms=float(out.h.detach().pow(2).mean().sqrt()), logit_spread=float(spread.max()))
        return hook

    def _top(self, m, args, out):
        if m.training:
            g = args[0]
            self.cur["loss"] = {"mse": _r(float(((out.pos.detach() - g.target) ** 2).mean())),
                                "conn": _r(float(out.aux["connectivity_loss"].detach()))}
            self.steps.append(self.cur)
            self.cur = {}


def label(name: str) -> str:
    """``encoders.1.2`` -> ``enc L2.2``, ``pools.0.emmps.1`` -> ``pool L1.1``, ``decoders.0.0`` -> ``dec L1.0``."""
    part = name.split(".")
    kind = {"encoders": "enc", "decoders": "dec", "pools": "pool"}[part[0]]
    return f"{kind} L{int(part[1]) + 1}.{part[-1]}"


def summarise(layers: list[str], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The layers with a coordinate update in data-flow order, each with its values in the last
    recorded forward (``last``) and the median over the earlier detailed forwards (``typical``);
    keys without dots, for the page's ``:result:`` references."""
    flow = [n for n in layers if n.startswith(("encoders", "decoders")) or ".emmps." in n]
    earlier = [st for st in steps[:-1] if any(n in st for n in flow)]

    def median(xs: list[float]) -> float | None:
        xs = sorted(x for x in xs if x is not None)
        return xs[len(xs) // 2] if xs else None

    out = []
    for n in flow:
        last = steps[-1].get(n, {}) if steps else {}
        row = {"layer": label(n)}
        for key in ("dx", "d2", "gain"):
            if key in last:
                row[key] = last[key]
                row[f"typical_{key}"] = median([st.get(n, {}).get(key) for st in earlier])
        out.append(row)
    first = next((st for st in steps if any(n in st for n in flow)), {})
    start = [{"layer": label(n), "d2": first[n]["d2"]} for n in flow if "d2" in first.get(n, {})]
    return {"cascade": out, "first_step_d2": start, "steps": len(steps)}


def _median(xs: list[float]) -> float:
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else math.nan


def spike_summary(steps: list[dict[str, Any]], factor: float = 10.0, after: int = 50) -> dict[str, Any] | None:
    """What moved first before a loss spike, from the detailed steps of a trace (``--detail-from``).

    The spike is the first detailed step whose batch training MSE exceeds ``factor`` times the
    median of the detailed steps before it. For every parameter group, its *typical* step (the
    median change of its weights before the spike) and the first step from which it changed by
    more than ``factor`` times that (``first_jump``, ``None`` if it never did up to the spike).
    Groups are listed by first jump; steps count from 1, as training steps. Also the pooling
    level's median saturation and logit spread before the spike, and the connectivity loss
    before it and over the ``after`` steps after it; and the largest typical step over gradient
    (Adam's gain) of the groups other than the first to move. ``None`` when no step qualifies.
    """
    detailed = [i for i, st in enumerate(steps) if "update" in st]
    spike = next((i for n, i in enumerate(detailed) if n >= 20
                  and steps[i]["loss"]["mse"] > factor * _median([steps[j]["loss"]["mse"] for j in detailed[:n]])),
                  None)
    if spike is None:
        return None
    before = [i for i in detailed if i < spike]
    groups = []
    for g in steps[detailed[0]]["update"]:
        typical = _median([steps[i]["update"][g]["step"] for i in before])
        typical_grad = _median([steps[i]["update"][g]["grad"] for i in before])
        jump = next((i for i in [*before, spike] if steps[i]["update"][g]["step"] > factor * typical), None)
        row = {"group": g, "typical_step": _r(typical), "typical_grad": _r(typical_grad),
               "typical_gain": _r(typical / typical_grad) if typical_grad else None,
               "first_jump": None if jump is None else jump + 1}
        if jump is not None:
            u = steps[jump]["update"][g]
            row.update(step_at_jump=u["step"], grad_at_jump=u["grad"], jump_ratio=_r(u["step"] / typical))
        groups.append(row)
    groups.sort(key=lambda r: (r["first_jump"] is None, r["first_jump"] or 0))
    pool = next((k for k in steps[detailed[0]] if k.startswith("pools.") and k.count(".") == 1), None)
    later = [i for i in detailed if spike < i <= spike + after]
    out = {"spike_step": spike + 1, "mse_at_spike": steps[spike]["loss"]["mse"],
           "mse_before": _r(_median([steps[i]["loss"]["mse"] for i in before])),
           "largest_mse": max(steps[i]["loss"]["mse"] for i in [spike, *later]),
           "conn_before": _r(_median([steps[i]["loss"]["conn"] for i in before])),
           "conn_after": _r(_median([steps[i]["loss"]["conn"] for i in later])) if later else None,
           "groups": groups, "moved_first": groups[0]["group"] if groups[0]["first_jump"] else None,
           # Adam's typical step over gradient: the largest among the groups that did not move first
           "others_largest_gain": max((r["typical_gain"] for r in groups[1:] if r["typical_gain"] is not None),
                                      default=None)}
    if pool:
        out.update(saturation_before=_r(_median([steps[i][pool].get("saturation") for i in before])),
                   logit_spread_before=_r(_median([steps[i][pool].get("logit_spread") for i in before])),
                   saturation_lowest=_r(min(steps[i][pool]["saturation"] for i in [*before[-30:], spike])))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name")
    p.add_argument("config", nargs="?")
    p.add_argument("--spike-summary", action="store_true",
                   help="add the spike summary (spike_summary) to the existing trace NAME (a path) and exit")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--detail-from", type=int, default=0,
                   help="record the per-layer statistics from this training step on (losses always)")
    args = p.parse_args(argv)
    if args.spike_summary:
        path = Path(args.name)
        doc = json.loads(path.read_text())
        doc["spike"] = spike_summary(doc["steps"])
        path.write_text(json.dumps(doc) + "\n")
        print(json.dumps(doc["spike"], indent=1))
        return 0
    if args.config is None:
        p.error("CONFIG is needed unless --spike-summary")
    rec = Recorder(args.detail_from)
    build = loop.build_model

    def build_and_attach(config, dataset):
        model = build(config, dataset)
        rec.attach(model)
        return model

    clip = torch.nn.utils.clip_grad_norm_

    def clip_and_record(params, max_norm, *a, **kw):
        total = clip(params, max_norm, *a, **kw)
        rec.grad.append(_r(float(total)))
        return total

    loop.build_model = build_and_attach
    torch.nn.utils.clip_grad_norm_ = clip_and_record
    cfg = load_config(args.config, [*args.overrides, "train.threads=1", "train.progress=false",
                                    "train.checkpoint=false"])
    if cfg["train"]["clip_grad"] <= 0:  # the gradient norm is read through clipping: an infinite
        cfg["train"]["clip_grad"] = math.inf  # bound measures it and leaves the gradients as they are
    with tempfile.TemporaryDirectory() as tmp:
        try:
            res = loop.train(cfg, Path(tmp) / "run", echo=lambda _s: None)
            status = {"status": "ok", "test": res.test, "epochs": res.epochs, "stability": res.stability}
        except loop.TrainingDiverged as e:
            status = {"status": "diverged", "message": str(e)}
        finally:
            rec.close()
            loop.build_model, torch.nn.utils.clip_grad_norm_ = build, clip
    if rec.cur:  # the forward that failed
        rec.steps.append(rec.cur)
    commit = source_commit()
    machine = machine_record()
    doc = {"name": args.name, "config": args.config, "overrides": args.overrides, **status,
           "summary": summarise(rec.layers, rec.steps), "spike": spike_summary(rec.steps) if args.detail_from else None,
           "layers": rec.layers, "grad_norm": rec.grad, "steps": rec.steps,
           "provenance": {"commit": commit, "torch": torch.__version__, "machine": platform.machine(),
                          **{k: machine[k] for k in ("cpu", "cpu_capability")},
                          "command": "python benchmarks/stability_trace.py "
                          + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))}}
    out = args.out or OUT / f"trace_{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc) + "\n")
    print(f"{args.name}: {status['status']}, {len(rec.steps)} steps -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
