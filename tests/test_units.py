"""Equivariance in floating point at every coordinate scale: pooling weights that are affine by
construction, scores forced to saturation, standardised lengths, and the checker's handling of
non-finite outputs (its negative controls)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eghn.data import Graph, LengthScaled, collate, length_scale, standardize_graph
from eghn.data.mcomplex import MComplexDataset
from eghn.models import EGHN
from eghn.nn import EPool
from eghn.nn import epool as epool_module
from eghn.nn.connectivity import connectivity_loss_dense
from eghn.nn.pool_ops import cluster_weights, dense_to_edges, row_normalize
from eghn.nn.scatter import scatter_sum
from eghn.testing import TOLERANCES, assert_equivariant, equivariance_error, randomize_parameters
from eghn.testing.strategies import random_graph

ALL = ("rotation", "reflection", "translation", "permutation")


def _batch(dtype=torch.float64, sizes=(7, 12, 5), seed=11):
    gen = torch.Generator().manual_seed(seed)
    parts = [random_graph(n, dim=3, node_dim=2, edge_dim=2, local_edge_dim=1, target=True, generator=gen)
             for n in sizes]
    return collate(parts).to(dtype=dtype)


def _eghn(levels: int, dtype: torch.dtype, seed: int = 0) -> EGHN:
    clusters = [5, 3, 2][:levels]
    torch.manual_seed(seed)
    model = EGHN(2, 2, 1, hidden=16, clusters=clusters, enc_layers=1, pool_layers=1, dec_layers=1)
    return randomize_parameters(model, gain=0.5, seed=seed).to(dtype)


def _saturate_scores(model: EGHN, logit_scale: float) -> None:
    """Scale the score heads so that the logits reach about +-``logit_scale``."""
    with torch.no_grad():
        for pool in model.pools:
            last = pool.score[-1]
            last.weight.mul_(logit_scale)
            last.bias.mul_(logit_scale)


# ---------------------------------------------------------------------------- affine pooling
@pytest.mark.parametrize("sizes", [(6, 6, 6), (7, 12, 5)], ids=["equal-size", "mixed-size"])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4, 1e30])
def test_cluster_weights_sum_to_one_for_any_logits(sizes, scale, dtype):
    """Columns of W sum to 1 over each graph's nodes up to rounding, even where the cluster's
    total score sum_i s_ik underflows to 0 (logits of +-1e4 and beyond)."""
    gen = torch.Generator().manual_seed(0)
    batch = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    logits = torch.randn(batch.numel(), 4, generator=gen, dtype=torch.float64) * scale
    logits[:, 0] -= 3 * scale  # cluster 0 loses everywhere: its mass underflows at large scales
    logits = logits.to(dtype)
    log_S = torch.log_softmax(logits, -1)
    W = cluster_weights(log_S, batch, len(sizes))
    assert torch.isfinite(W).all() and (W >= 0).all()
    sums = scatter_sum(W, batch, len(sizes))
    eps = torch.finfo(dtype).eps
    assert (sums - 1).abs().max() <= 4 * max(sizes) * eps
    if scale >= 1e4:  # the regime of the bug: some cluster's mass is exactly 0 in floating point
        assert float(scatter_sum(log_S.exp(), batch, len(sizes)).min()) == 0.0


def test_cluster_weights_zero_column_falls_back_to_centroid():
    S = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    batch = torch.tensor([0, 0, 1, 1])
    W = cluster_weights(S.log(), batch, 2)
    assert torch.allclose(W[:2, 1], torch.full((2,), 0.5, dtype=torch.float64))  # no mass in graph 0
    assert torch.allclose(W[:2, 0], torch.full((2,), 0.5, dtype=torch.float64))


def test_row_normalisation_never_divides_by_zero():
    A = torch.zeros(2, 3, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        A[0, 0, 1] = 2.0
        A[0, 1, 1] = 2.0
        A[1, 2, 2] = 1e-320  # a denormal row sum
    rows = row_normalize(A)
    assert torch.equal(rows[0, 2], torch.zeros(3, dtype=torch.float64))  # an empty row stays empty
    assert rows[0, 0, 1] == 1.0 and rows[0, 1, 1] == 1.0 and 0 < rows[1, 2, 2] < 1e-300  # a denormal row shrinks
    loss = connectivity_loss_dense(A) + dense_to_edges(A)[1].sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(A.grad).all()


@pytest.mark.parametrize("levels", [1, 2])
def test_saturated_scores_stay_finite_and_equivariant(levels):
    """Score logits of about +-1e4: clusters' total scores underflow to 0, yet forward and
    backward are finite and EGHN is E(n)-equivariant to 1e-9 in float64."""
    g = _batch(torch.float64)
    model = _eghn(levels, torch.float64, seed=1)
    _saturate_scores(model, 1e4)
    out = model(g)
    masses = [scatter_sum(s, b, g.num_graphs) for s, b in
              zip(out.aux["scores"], [g.batch] + [torch.arange(g.num_graphs).repeat_interleave(k)
                                                  for k in model.clusters[:-1]])]
    assert min(float(m.detach().min()) for m in masses) == 0.0  # the underflow regime is exercised
    loss = ((out.pos - g.target) ** 2).mean() + out.aux["reg_loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert_equivariant(model, g, checks=ALL, translation_scale=1e3)


def test_clamped_mass_breaks_translation_under_saturation(monkeypatch):
    """Negative control: dividing by a clamped mass (the previous implementation) is not
    translation-equivariant once a cluster's mass underflows; the check above would fail."""
    g = _batch(torch.float64)
    model = _eghn(1, torch.float64, seed=1)
    _saturate_scores(model, 1e4)

    def clamped(S, x, batch, num_graphs, **_):
        n, k = S.shape
        total = scatter_sum(torch.einsum("nk,nf->nkf", S, x.reshape(n, -1)), batch, num_graphs)
        mass = scatter_sum(S, batch, num_graphs).clamp_min(1e-12)
        return (total / mass.unsqueeze(-1)).reshape(num_graphs * k, *x.shape[1:])

    monkeypatch.setattr(epool_module, "reduce_clusters", clamped)
    with pytest.raises(AssertionError, match="translation"):
        assert_equivariant(model, g, checks=("translation",), translation_scale=1e3)


def test_epool_weights_are_affine_in_the_pooled_positions():
    """Pooled positions move exactly with a translation of the inputs (Lemma 2.6 in floats)."""
    g = _batch(torch.float64)
    pool = randomize_parameters(EPool(2, 2, 8, 4, 1), gain=0.5, seed=3).double()
    with torch.no_grad():
        pool.score[-1].weight.mul_(1e5)
    Z = torch.stack([g.pos, g.vel], -1)
    t = torch.tensor([1e3, -2e3, 5e2], dtype=torch.float64)
    a = pool(Z, g.h, g.local_edge_index, g.batch, g.num_graphs, g.local_edge_attr)
    b = pool(Z + torch.stack([t, torch.zeros(3, dtype=torch.float64)], -1), g.h, g.local_edge_index, g.batch,
             g.num_graphs, g.local_edge_attr)
    assert (b.Z[..., 0] - a.Z[..., 0] - t).abs().max() < 1e-9


# ---------------------------------------------------------------------------- the checker
def test_checker_fails_on_nan_output_and_names_it():
    g = _batch(torch.float64)
    errors = equivariance_error(lambda gr: torch.full_like(gr.pos, math.nan), g)
    assert all(math.isnan(v) for v in errors.values())
    with pytest.raises(AssertionError, match="untransformed input"):
        assert_equivariant(lambda gr: torch.full_like(gr.pos, math.nan), g)


def test_checker_names_the_transformation_that_produced_inf():
    g = _batch(torch.float64)

    def blows_up_far_away(gr):  # finite near the origin, inf once translated far
        return torch.where(gr.pos.abs().max() > 100, torch.full_like(gr.pos, math.inf), gr.pos)

    report: dict[str, str] = {}
    errors = equivariance_error(blows_up_far_away, g, translation_scale=1e3, report=report)
    assert math.isnan(errors["translation"]) and errors["rotation"] < 1e-12
    assert list(report) == ["translation"]
    with pytest.raises(AssertionError, match="after the translation"):
        assert_equivariant(blows_up_far_away, g, translation_scale=1e3)


# ---------------------------------------------------------------------------- coordinate units
def test_bare_eghn_raises_instead_of_returning_nan():
    """Without standardisation, coordinates of scale 1e3 overflow: a clear error, not NaN."""
    n = 12
    idx = torch.arange(n)
    row, col = idx.repeat_interleave(n), idx.repeat(n)
    ei = torch.stack([row[row != col], col[row != col]])
    torch.manual_seed(0)
    model = EGHN.single_level(1, 0, 0, clusters=3).eval()
    g = Graph(pos=torch.randn(n, 3) * 1e3, vel=torch.randn(n, 3), h=torch.ones(n, 1), edge_index=ei,
              local_edge_index=ei)
    with pytest.raises(FloatingPointError, match=r"RMS extent of 1.*[Ss]tandardise"):
        model(g)
    unit = length_scale(_ListDataset([g]))
    out = model(standardize_graph(g, unit)).pos * unit  # the same system, standardised: finite
    assert torch.isfinite(out).all()


class _ListDataset:
    def __init__(self, graphs):
        self.graphs = graphs

    def __len__(self):
        return len(self.graphs)

    def collate(self, idx):
        return collate([self.graphs[i] for i in idx])


def test_length_scale_and_standardisation_follow_the_declared_powers():
    ds = MComplexDataset.generate(3, 3, 1, n_samples=6, seed=0, n_steps=2600)
    for factor in (1e-3, 1e4):
        big = _Rescaled(ds, factor)
        assert length_scale(big) == pytest.approx(factor * length_scale(ds), rel=1e-6)
        a, b = LengthScaled(ds, length_scale(ds)).collate([0, 1]), LengthScaled(big, length_scale(big)).collate([0, 1])
        for f in ("pos", "vel", "target", "h", "edge_attr", "local_edge_attr"):
            assert torch.allclose(getattr(a, f), getattr(b, f), rtol=1e-5, atol=1e-6), f


class _Rescaled:
    """``ds`` expressed in a unit ``factor`` times smaller (lengths times ``factor``)."""

    def __init__(self, ds, factor):
        self.ds, self.factor = ds, factor
        self.feature_length_powers = ds.feature_length_powers

    def __len__(self):
        return len(self.ds)

    def collate(self, idx):
        return standardize_graph(self.ds.collate(idx), 1.0 / self.factor, self.feature_length_powers)


@given(levels=st.integers(1, 3), log_scale=st.floats(-3, 5), log_shift=st.floats(0, 5),
       logit_scale=st.sampled_from([1.0, 1e2, 1e4]), f64=st.booleans(), seed=st.integers(0, 50))
def test_standardised_eghn_is_equivariant_at_any_scale(levels, log_scale, log_shift, logit_scale, f64, seed):
    """Coordinate scales 1e-3..1e5, translations up to 1e5, near-degenerate score matrices,
    1-3 levels, float32 and float64: EGHN through standardised lengths is E(n)-equivariant
    within the dtype's budget (TOLERANCES)."""
    dtype = torch.float64 if f64 else torch.float32
    scale = 10.0**log_scale
    g0 = _batch(torch.float64, sizes=(7, 12, 6), seed=seed)
    g = g0.replace(pos=g0.pos * scale, vel=g0.vel * scale, target=g0.target * scale).to(dtype=dtype)
    unit = length_scale(_ListDataset([g]))
    model = _eghn(levels, dtype, seed=seed)
    _saturate_scores(model, logit_scale)

    def fn(gr):
        return model(standardize_graph(gr, unit)).pos * unit

    assert_equivariant(fn, g, checks=ALL, translation_scale=10.0**log_shift, tolerance=TOLERANCES[dtype])


# ---------------------------------------------------------------------------- training in two units
@pytest.fixture(scope="module")
def mcomplex_dirs(tmp_path_factory, small_mcomplex):
    """One small M-complex dataset written in its own units, in units 1e-3x and 1e4x of them."""
    root = tmp_path_factory.mktemp("units")
    base = small_mcomplex
    out = {1.0: base}
    for factor in (1e-3, 1e4):
        d = root / f"x{factor:g}"
        d.mkdir()
        (d / "config.json").write_text((base / "config.json").read_text())
        for split in ("train", "val", "test"):
            with np.load(base / f"{split}.npz") as z:
                arrays = {k: z[k] for k in z.files}
            arrays["pos"] = (arrays["pos"].astype(np.float64) * factor).astype(np.float32)
            arrays["vel"] = (arrays["vel"].astype(np.float64) * factor).astype(np.float32)
            np.savez(d / f"{split}.npz", **arrays)
        out[factor] = d
    return out


def _config(tmp_path, root, name, **data):
    from eghn.train.config import resolve

    return resolve({"name": name, "seed": 2, "device": "cpu", "out_dir": str(tmp_path),
                    "data": {"name": "mcomplex", "root": str(root), **data},
                    "model": {"name": "eghn", "hidden": 16, "clusters": [3], "enc_layers": 2, "pool_layers": 1,
                              "dec_layers": 1},
                    "train": {"epochs": 4, "batch_size": 10, "eval_every": 2, "lr": 5e-3, "progress": False,
                              "threads": 1}})


@pytest.mark.slow
def test_training_is_unit_invariant(tmp_path, mcomplex_dirs):
    """The same data in units 1e-3x and 1e4x: equal learning curves and test MSE up to the
    unit conversion (MSE scales with the square of the unit), and predictions in the data's
    own units."""
    from eghn.train import load_run
    from eghn.train.loop import train

    res = {f: train(_config(tmp_path, d, f"u{f:g}"), tmp_path / f"u{f:g}", echo=lambda _: None)
           for f, d in mcomplex_dirs.items()}
    for f in (1e-3, 1e4):
        assert res[f].test / f**2 == pytest.approx(res[1.0].test, rel=1e-3)
        assert res[f].best_val / f**2 == pytest.approx(res[1.0].best_val, rel=1e-3)
        cfg = json.loads((tmp_path / f"u{f:g}" / "config.json").read_text())
        saved = json.loads((tmp_path / "u1" / "config.json").read_text())
        assert cfg["data"]["length_scale"] / f == pytest.approx(saved["data"]["length_scale"], rel=1e-6)
    # predictions in the data's own units: a raw test graph in, positions in its units out
    runs = {f: load_run(tmp_path / f"u{f:g}") for f in mcomplex_dirs}
    tests = {f: MComplexDataset(d, "test") for f, d in mcomplex_dirs.items()}
    g = {f: tests[f].collate(range(len(tests[f]))) for f in mcomplex_dirs}
    pred = {f: runs[f].predict(g[f]) for f in mcomplex_dirs}
    for f in mcomplex_dirs:
        mse = float(((pred[f].double() - g[f].target.double()) ** 2).mean())
        assert mse == pytest.approx(res[f].test, rel=1e-4)
        assert torch.allclose(pred[f] / f, pred[1.0], rtol=1e-3, atol=1e-3 * float(pred[1.0].abs().max()))


@pytest.mark.slow
def test_training_without_standardisation_fails_loudly_in_large_units(tmp_path, mcomplex_dirs):
    """Switched off (data.length_scale = 1) on data in units 1e4x, EGHN overflows: the run
    stops with the cause named instead of producing NaN silently."""
    from eghn.train.loop import train

    with pytest.raises(FloatingPointError, match="RMS extent"):
        train(_config(tmp_path, mcomplex_dirs[1e4], "raw", length_scale=1.0), tmp_path / "raw", echo=lambda _: None)


# ---------------------------------------------------------------------------- the released architecture
def _released(mass_floor=None):
    torch.manual_seed(2)
    model = EGHN(2, 2, 1, hidden=16, clusters=[4], unpool_layers=1, egnn_form="released", pool_form="released",
                 cluster_graph="released", unpool_form="released", conn_loss="released", mass_floor=mass_floor)
    model = randomize_parameters(model, gain=0.5, seed=2).double()
    with torch.no_grad():  # saturate the released score head
        model.pools[0].score[-1].weight.mul_(1e4)
        model.pools[0].score[-1].bias.mul_(1e4)
    return model


def test_released_pooling_is_affine_under_saturation():
    """EGHN.released normalises its cluster weights in log space too: equivariant with a
    saturated score head, where the released code's mass floor (mass_floor=1e-5, kept as an
    option for bit-for-bit reproduction) is not."""
    g = _batch(torch.float64)
    assert_equivariant(_released(), g, checks=("translation", "permutation"), translation_scale=1e3)
    with pytest.raises(AssertionError, match="translation"):
        assert_equivariant(_released(mass_floor=1e-5), g, checks=("translation",), translation_scale=1e3)
