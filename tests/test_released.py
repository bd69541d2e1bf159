"""The released architecture (``EGHN.released``) against numbers produced by the authors' code.

The fixture ``fixtures/authors_eghn_mocap_run.npz`` holds numbers only. It was made by running
the authors' released code (github hanjq17/EGHN, unmodified, from a scratch directory outside
this repository, with a stand-in for ``torch_sparse.spmm`` that computes the same sparse-dense
product) under torch 2.13 on CPU in float32:

* their ``EGHN`` class built as their mocap script builds it (2 node features, 2 edge
  features, width 64, 5 clusters, 3 interaction / 3 pooling layers, 1 decoder layer, SiLU)
  after ``torch.manual_seed(11)``; every weight was then rounded to the nearest float16 value
  (so that the fixture stores them losslessly as float16, halving its size), and these
  rounded weights are the ones their model ran with; keys ``w/<their parameter name>``;
* one batch of four mocap Run training samples of their data pipeline (their
  ``motion_run.pkl`` and split, Δ = 30, ``max_training_samples=3000``; samples 0, 85, 170
  and 255, i.e. one from each of four training trials; ``samples`` holds their (trial id,
  start frame)), with the inputs formed as their training script forms them: node features
  ``[|v|, y / max y over the batch]``, global edge features ``[hop count, |x_i - x_j|^2]``,
  local edge features ``[1, |x_i - x_j|^2]``; keys ``pos``, ``vel``, ``h``, ``edge_index``,
  ``edge_attr``, ``local_edge_index``, ``local_edge_attr``, ``target``;
* their model's outputs in eval mode without gradients: the predicted positions
  ``out_pos``, the decoder's invariant features ``out_h`` and the cut loss ``cut_loss``; then
  the same model converted to float64 on the same input numbers converted to float64:
  ``out_pos_float64`` and ``cut_loss_float64``; ``n_params`` is their parameter count.

Measured when the fixture was made: eghn in float32 differs from their float32 positions by at
most 7.6e-6 (values up to 22.5: float32 rounding; their own float32 and float64 outputs differ
by 5.6e-6); in float64 the two models agree to about 1e-14.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eghn.data import Graph
from eghn.data.paths import find_data
from eghn.models import EGHN, authors_key_map, load_authors_state_dict

FIXTURE = Path(__file__).parent / "fixtures" / "authors_eghn_mocap_run.npz"


def _fixture():
    z = np.load(FIXTURE)
    weights = {k[2:]: torch.from_numpy(z[k].astype(np.float32)) for k in z.files if k.startswith("w/")}
    B = int(z["num_graphs"])
    g = Graph(pos=torch.from_numpy(z["pos"]), vel=torch.from_numpy(z["vel"]), h=torch.from_numpy(z["h"]),
              edge_index=torch.from_numpy(z["edge_index"].astype(np.int64)),
              edge_attr=torch.from_numpy(z["edge_attr"]),
              local_edge_index=torch.from_numpy(z["local_edge_index"].astype(np.int64)),
              local_edge_attr=torch.from_numpy(z["local_edge_attr"]),
              target=torch.from_numpy(z["target"]),
              batch=torch.arange(B).repeat_interleave(31), num_graphs=B)
    return z, weights, g


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    z, _, _ = _fixture()
    assert _n_params(EGHN.released(2, 2, 2, clusters=5)) == int(z["n_params"]) == 362_032
    # the paper-equation model at the released layer counts is smaller (and not the authors')
    assert _n_params(EGHN.single_level(1, 2, 0, clusters=5)) == 252_305


def test_reproduces_the_authors_model_in_float32():
    z, weights, g = _fixture()
    model = load_authors_state_dict(EGHN.released(2, 2, 2, clusters=5), weights).eval()
    with torch.no_grad():
        out = model(g)
    assert out.pos.dtype == torch.float32
    assert (out.pos - torch.from_numpy(z["out_pos"])).abs().max().item() <= 1e-5
    assert (out.pos.double() - torch.from_numpy(z["out_pos_float64"])).abs().max().item() <= 1e-5
    assert abs(out.aux["connectivity_loss"].item() - float(z["cut_loss"])) <= 1e-5
    # the released code's mass floor (an option) gives the same numbers on this batch
    m1 = load_authors_state_dict(EGHN.released(2, 2, 2, clusters=5, mass_floor=1e-5), weights).eval()
    with torch.no_grad():
        assert (m1(g).pos - torch.from_numpy(z["out_pos"])).abs().max().item() <= 1e-5
    # batch-max normalisation in the model is a no-op on these already-normalised features
    m2 = load_authors_state_dict(EGHN.released(2, 2, 2, clusters=5, batch_max_features=[1]), weights).eval()
    with torch.no_grad():
        assert (m2(g).pos - torch.from_numpy(z["out_pos"])).abs().max().item() <= 1e-5


def test_reproduces_the_authors_model_in_float64():
    """Both models in float64 on the same input numbers: equal up to float64 rounding."""
    z, weights, g = _fixture()
    model = load_authors_state_dict(EGHN.released(2, 2, 2, clusters=5), weights).double().eval()
    with torch.no_grad():
        out = model(g.to(dtype=torch.float64))
    assert (out.pos - torch.from_numpy(z["out_pos_float64"])).abs().max().item() <= 1e-10
    assert abs(out.aux["connectivity_loss"].item() - float(z["cut_loss_float64"])) <= 1e-12


def test_loader_checks_the_state_dict():
    _, weights, _ = _fixture()
    model = EGHN.released(2, 2, 2, clusters=5)
    assert set(authors_key_map(model).values()) == set(weights)
    broken = dict(weights)
    broken.pop("embedding.weight")
    with pytest.raises(KeyError, match=r"embedding\.weight"):
        load_authors_state_dict(model, broken)
    with pytest.raises(ValueError, match="shape"):
        load_authors_state_dict(EGHN.released(2, 2, 2, clusters=4), weights)
    with pytest.raises(ValueError, match="released"):
        load_authors_state_dict(EGHN.single_level(2, 2, 2), weights)


def test_released_features_match_the_authors_pipeline():
    from eghn.data import MocapDataset

    z, _, g = _fixture()
    path = find_data(Path("mocap") / "cmu09_run.npz")
    if path is None:
        pytest.skip("CMU mocap Run data not found (mocap/cmu09_run.npz under $EGHN_DATA_DIR or ../shared/data)")
    ds = MocapDataset("train", "run", data_dir=path.parent, max_samples=400, features="released")
    assert len(ds) == 400 and (ds.node_dim, ds.edge_dim, ds.local_edge_dim) == (2, 2, 2)
    where = {(int(t), int(s)): k for k, (t, s) in enumerate(ds.samples)}
    b = ds.collate([where[(int(t), int(s))] for t, s in z["samples"]])
    torch.testing.assert_close(b.pos, g.pos)
    torch.testing.assert_close(b.vel, g.vel)
    assert torch.equal(b.edge_index, g.edge_index) and torch.equal(b.local_edge_index, g.local_edge_index)
    torch.testing.assert_close(b.edge_attr, g.edge_attr)
    torch.testing.assert_close(b.local_edge_attr, g.local_edge_attr)
    h = b.h.clone()
    h[:, 1] /= h[:, 1].max()  # what EGHN(batch_max_features=[1]) does
    torch.testing.assert_close(h, g.h)
    assert ds[0].edge_attr.shape == (130, 2) and ds[0].local_edge_attr.shape == (60, 2)


def _random_batch(seed=0, sizes=(7, 9)):
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for n in sizes:
        ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
        ei = torch.cat([ring, ring.flip(0)], 1)
        parts.append(Graph(pos=torch.randn(n, 3, generator=gen, dtype=torch.float64),
                           vel=torch.randn(n, 3, generator=gen, dtype=torch.float64),
                           h=torch.randn(n, 2, generator=gen, dtype=torch.float64),
                           edge_index=ei, edge_attr=torch.rand(ei.shape[1], 2, generator=gen, dtype=torch.float64),
                           local_edge_index=ei,
                           local_edge_attr=torch.rand(ei.shape[1], 2, generator=gen, dtype=torch.float64)))
    from eghn.data import collate

    return collate(parts)


_ALL_RELEASED = dict(egnn_form="released", pool_form="released", cluster_graph="released",
                     unpool_form="released", conn_loss="released")


@pytest.mark.parametrize("levels", [[3], [4, 2]])
def test_released_variant_is_equivariant(levels):
    g = _random_batch()
    model = EGHN(2, 2, 2, hidden=16, clusters=levels, unpool_layers=2, batch_max_features=[1],
                 **_ALL_RELEASED).double()
    Q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    t = torch.randn(3, dtype=torch.float64)
    with torch.no_grad():
        out = model(g).pos
        moved = model(g.replace(pos=g.pos @ Q.T + t, vel=g.vel @ Q.T)).pos
    torch.testing.assert_close(moved, out @ Q.T + t)


@pytest.mark.parametrize("form", ["egnn_form", "pool_form", "cluster_graph", "unpool_form", "conn_loss"])
def test_each_released_form_alone(form):
    """Every difference is an option of the paper model: one at a time, with two levels."""
    g = _random_batch()
    model = EGHN(2, 2, 2, hidden=8, clusters=[4, 2], **{form: "released"}).double()
    out = model(g)
    loss = out.pos.square().mean() + out.aux["reg_loss"]
    loss.backward()
    assert out.pos.shape == g.pos.shape and torch.isfinite(loss)
    assert model.embed.weight.grad is not None and model.pools[1].score[0].weight.grad is not None
    with pytest.raises(ValueError, match="paper' or 'released'"):
        EGHN(2, 2, 2, **{form: "authors"})
