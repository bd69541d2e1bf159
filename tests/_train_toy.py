"""A tiny synthetic dataset and model for the training-stack tests (no files, no network).

``ToyDataset``: graphs of 3-6 particles in 3-D (mixed sizes in one batch), fully connected
global edges with one attribute, ring-shaped local edges; the target is a fixed linear map of
position, velocity and the graph centroid, so a small equivariant model can learn it.
``ToyModel``: an EGNN-like single layer, E(3)-equivariant, registered as ``"_toy"``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from eghn.data import Graph, collate
from eghn.data.registry import _EXTRA, register_dataset
from eghn.models import ModelOutput, register
from eghn.models.registry import available


class ToyDataset:
    """Synthetic split; ``size`` samples drawn from ``seed`` (+ a per-split offset)."""

    node_dim, edge_dim, local_edge_dim = 1, 1, 0
    feature_length_powers: ClassVar[dict] = {"h": (1,)}  # h = |v|

    def __init__(self, size: int = 40, seed: int = 0, split: str = "train") -> None:
        offset = {"train": 0, "val": 1000, "test": 2000}[split]
        gen = torch.Generator().manual_seed(seed + offset)
        self.graphs = []
        for _ in range(size):
            n = int(torch.randint(3, 7, (1,), generator=gen))
            pos = torch.randn(n, 3, generator=gen, dtype=torch.float64)
            vel = torch.randn(n, 3, generator=gen, dtype=torch.float64)
            ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            keep = ii != jj
            ei = torch.stack([ii[keep], jj[keep]])
            ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
            target = pos + 0.3 * vel + 0.2 * (pos.mean(0) - pos)
            self.graphs.append(Graph(pos=pos, vel=vel, h=vel.norm(dim=1, keepdim=True), edge_index=ei,
                                     edge_attr=torch.ones(ei.shape[1], 1, dtype=torch.float64),
                                     local_edge_index=ring, target=target))

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> Graph:
        return self.graphs[i]

    def collate(self, indices) -> Graph:
        return collate([self.graphs[int(i)] for i in indices])


class ToyModel(nn.Module):
    """x_i' = x_i + a v_i + sum_j (x_i - x_j) phi(|x_i - x_j|^2, h_i, h_j, e_ij) / N_i."""

    def __init__(self, node_dim: int, edge_dim: int, local_edge_dim: int = 0, hidden: int = 8,
                 reg: float = 0.0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.1))
        self.phi = nn.Sequential(nn.Linear(1 + 2 * node_dim + edge_dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.reg = reg

    def forward(self, g: Graph) -> ModelOutput:
        i, j = g.edge_index
        d = g.pos[i] - g.pos[j]
        feats = [d.pow(2).sum(1, keepdim=True), g.h[i], g.h[j]]
        if g.edge_attr is not None:
            feats.append(g.edge_attr)
        w = self.phi(torch.cat(feats, 1))
        upd = torch.zeros_like(g.pos).index_add_(0, i, d * w)
        deg = torch.zeros(g.num_nodes, 1, dtype=g.pos.dtype, device=g.pos.device).index_add_(
            0, i, torch.ones_like(w))
        pos = g.pos + self.a * g.vel + upd / deg.clamp(min=1)
        aux = {"reg_loss": self.reg * self.a.pow(2)} if self.reg else {}
        return ModelOutput(pos=pos, aux=aux)


if "_toy" not in available():
    register("_toy")(ToyModel)
if "_toy" not in _EXTRA:
    register_dataset("_toy", ToyDataset)


def toy_config(tmp_path, **train) -> dict:
    """A resolved config for the toy data and model, CPU, float64, no progress bars."""
    from eghn.train.config import resolve

    raw = {"name": "toy", "seed": 3, "device": "cpu", "out_dir": str(tmp_path),
           "data": {"name": "_toy", "size": 40}, "model": {"name": "_toy", "hidden": 8},
           "train": {"epochs": 6, "batch_size": 8, "eval_every": 2, "lr": 1e-2, "dtype": "float64",
                     "progress": False, **train}}
    return resolve(raw)
