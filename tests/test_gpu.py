"""GPU checks (marker ``gpu``): skipped without CUDA, run by ``tox -e gpu``.

They check that the CUDA path computes the same function as the CPU path, stays equivariant
on the device in float32 and float64, and that every registered model trains a step on CUDA.
"""

from __future__ import annotations

import pytest
import torch

import eghn.models
from eghn.data import collate
from eghn.models import EGHN
from eghn.testing import TOLERANCES, assert_equivariant, randomize_parameters
from eghn.testing.strategies import random_graph

pytestmark = pytest.mark.gpu


def _batch(dtype, sizes=(40, 25, 60)):
    gen = torch.Generator().manual_seed(0)
    return collate([random_graph(n, node_dim=2, edge_dim=2, local_edge_dim=1, edge_prob=0.3, target=True,
                                 generator=gen) for n in sizes]).to(dtype=dtype)


def _eghn(dtype):
    model = EGHN(2, 2, 1, hidden=32, clusters=[6, 3], enc_layers=2, pool_layers=2, dec_layers=1)
    return randomize_parameters(model, gain=0.8, seed=0).to(dtype)


def test_cuda_matches_cpu():
    g = _batch(torch.float64)
    model = _eghn(torch.float64)
    cpu = model(g).pos
    gpu = model.cuda()(g.to("cuda")).pos.cpu()
    assert torch.allclose(cpu, gpu, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_cuda_equivariance(dtype):
    g = _batch(dtype).to("cuda")
    model = _eghn(dtype).cuda()
    errors = assert_equivariant(model, g, outputs={"pos": "position", "aux.connectivity_loss": "invariant:fixed"})
    assert max(errors.values()) <= TOLERANCES[dtype]


@pytest.mark.parametrize("name", [n for n in eghn.models.available() if not n.startswith("_")])
def test_every_model_trains_on_cuda(name):
    g = _batch(torch.float32).to("cuda")
    torch.manual_seed(0)
    model = eghn.models.get(name, node_dim=2, edge_dim=2, local_edge_dim=1).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        out = model(g)
        loss = ((out.pos - g.target) ** 2).mean() + out.aux.get("reg_loss", 0.0)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize("recompute", [True, False])
def test_autocast_bfloat16_forward_backward(recompute):
    from eghn.nn import set_edge_recompute

    g = _batch(torch.float32).to("cuda")
    model = _eghn(torch.float32).cuda()
    previous = set_edge_recompute(recompute)
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(g)
            loss = (out.pos.float() - g.target).square().mean() + out.aux["reg_loss"]
        loss.backward()
    finally:
        set_edge_recompute(previous)
    assert torch.isfinite(out.pos).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    ref = model(g).pos
    assert (out.pos.float() - ref).abs().max() / ref.abs().max() < 5e-2


def test_large_radius_graph_step():
    """A protein-sized batch (20 x 855 nodes, ~30 neighbours each) trains on the device."""
    from eghn.data import Graph

    gen = torch.Generator().manual_seed(0)
    parts = []
    for _ in range(20):
        pos = torch.rand(855, 3, generator=gen) * 9.5  # unit density
        near = (torch.cdist(pos, pos) < 1.9) & ~torch.eye(855, dtype=torch.bool)
        chain = torch.stack([torch.arange(854), torch.arange(1, 855)])
        parts.append(Graph(pos=pos, vel=0.1 * torch.randn(855, 3, generator=gen),
                           edge_index=torch.nonzero(near).T.contiguous(),
                           local_edge_index=torch.cat([chain, chain.flip(0)], 1), target=pos))
    g = collate(parts).to("cuda")
    model = EGHN.single_level(1, 0, clusters=20).cuda()
    out = model(g)
    ((out.pos - g.target) ** 2).mean().add(out.aux["reg_loss"]).backward()
    assert torch.isfinite(out.pos).all()
