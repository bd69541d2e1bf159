"""Reference MSEs printed beside a run (eghn.data.baselines, eghn.train.references)."""

from __future__ import annotations

import numpy as np
import pytest

from eghn.data import MocapDataset
from eghn.data.baselines import fit_linear_extrapolation, hold_still_mse, linear_extrapolation_mse
from eghn.data.paths import find_data
from eghn.train.config import load_config, resolve
from eghn.train.references import reference_mses


def test_linear_extrapolation_recovers_t_and_hold_still():
    rng = np.random.default_rng(0)
    x0, v0 = rng.normal(size=(7, 5, 3)), rng.normal(size=(7, 5, 3))
    xt = x0 + 2.5 * v0
    t = fit_linear_extrapolation(x0, v0, xt)
    assert t == pytest.approx(2.5, rel=1e-12)
    assert linear_extrapolation_mse(t, x0, v0, xt) == pytest.approx(0.0, abs=1e-24)
    assert hold_still_mse(x0, xt) == pytest.approx(float((6.25 * v0 * v0).mean()), rel=1e-12)
    # the fit is least squares: noise orthogonal to v0 leaves t alone, and the MSE is the noise's
    noise = rng.normal(size=x0.shape)
    noise -= (noise * v0).sum() / (v0 * v0).sum() * v0
    assert fit_linear_extrapolation(x0, v0, xt + noise) == pytest.approx(2.5, rel=1e-12)
    assert linear_extrapolation_mse(2.5, x0, v0, xt + noise) == pytest.approx(float((noise**2).mean()), rel=1e-12)
    # a rotation of everything changes neither number
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert fit_linear_extrapolation(x0 @ q, v0 @ q, (xt + noise) @ q) == pytest.approx(2.5, rel=1e-12)


def test_baseline_errors():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="velocities are all zero"):
        fit_linear_extrapolation(x, x, x + 1)
    with pytest.raises(ValueError, match="share one non-empty shape"):
        fit_linear_extrapolation(x, x[:2], x)
    with pytest.raises(ValueError, match="share one non-empty shape"):
        hold_still_mse(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="share one non-empty shape"):
        hold_still_mse(np.zeros((0, 3)), np.zeros((0, 3)))
    assert hold_still_mse(np.zeros((4, 2)), np.ones((4, 2))) == 1.0  # any number of dimensions
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        hold_still_mse(bad, x)


def test_mcomplex_reference_is_the_linear_extrapolation(small_mcomplex):
    cfg = resolve({"name": "r", "data": {"name": "mcomplex", "root": str(small_mcomplex)},
                   "model": {"name": "eghn"}, "paper_reference": "table1/EGHN/single (3,3)"})
    refs = reference_mses(cfg)
    assert [r.key for r in refs] == ["linear_extrapolation", "paper"]
    assert refs[0].t is not None and 0 < refs[0].mse < 10 and f"{refs[0].t:.3g}" in refs[0].label
    assert refs[1].mse == pytest.approx(0.1158) and refs[1].t is None


@pytest.mark.parametrize("protocol", ["paper", "released"])
def test_mocap_references_on_the_test_split(protocol):
    if find_data("mocap/cmu09_run.npz") is None:
        pytest.skip("shared CMU mocap data not found (mocap/cmu09_run.npz under $EGHN_DATA_DIR or ../shared/data)")
    refs = {r.key: r for r in reference_mses(load_config("mocap/run_eghn", [f'protocol="{protocol}"']))}
    assert set(refs) == {"hold_still", "linear_extrapolation"}
    train = MocapDataset("train", "run", max_samples=200 if protocol == "paper" else 400)
    test = MocapDataset("test", "run")
    x0, v0, xt = (a.double().numpy() for a in (test.pos, test.vel, test.target))
    assert refs["hold_still"].mse == pytest.approx(float(((x0 - xt) ** 2).mean()), rel=1e-9)
    d, v = (train.target - train.pos).double().numpy(), train.vel.double().numpy()
    t = float((d * v).sum() / (v * v).sum())
    assert refs["linear_extrapolation"].t == pytest.approx(t, rel=1e-9)
    assert refs["linear_extrapolation"].mse == pytest.approx(float(((x0 + t * v0 - xt) ** 2).mean()), rel=1e-9)
    # 30 frames ahead a runner moves far: velocities explain most of it
    assert refs["linear_extrapolation"].mse < 0.5 * refs["hold_still"].mse


def test_protein_references_on_the_embedded_frames(tmp_path, monkeypatch):
    pytest.importorskip("MDAnalysisTests")  # the embedded AdK frames
    monkeypatch.setenv("EGHN_CACHE_DIR", str(tmp_path / "cache"))
    from eghn.train.loop import build_datasets

    cfg = load_config("protein/adk_mpnn", ["data.progress=false"], protocol="offline")
    refs = {r.key: r for r in reference_mses(cfg)}
    assert list(refs) == ["hold_still", "linear_extrapolation"]
    ds = build_datasets(cfg, splits=("train", "test"))
    # computed here from the graphs themselves: holding still on the test split, and t fitted on train
    x0, xt = (np.stack([getattr(g, k).numpy() for g in ds["test"]]) for k in ("pos", "target"))
    assert refs["hold_still"].mse == pytest.approx(float(((x0 - xt) ** 2).mean()), rel=1e-6)
    train = [np.stack([getattr(g, k).numpy() for g in ds["train"]]) for k in ("pos", "vel", "target")]
    assert refs["linear_extrapolation"].t == pytest.approx(fit_linear_extrapolation(*train), rel=1e-12)
    assert 0 < refs["linear_extrapolation"].mse < refs["hold_still"].mse  # the frames do drift along v
    # on the validation split: the same t (fitted on train), that split's frames
    val = {r.key: r for r in reference_mses(cfg, "val")}
    x0, xt = (np.stack([getattr(g, k).numpy() for g in build_datasets(cfg, splits=("val",))["val"]])
              for k in ("pos", "target"))
    assert val["hold_still"].mse == pytest.approx(float(((x0 - xt) ** 2).mean()), rel=1e-6)
    assert val["linear_extrapolation"].t == refs["linear_extrapolation"].t
    assert val["hold_still"].mse != refs["hold_still"].mse


def test_the_paper_reference_is_a_test_split_reference(small_mcomplex):
    cfg = resolve({"name": "r", "data": {"name": "mcomplex", "root": str(small_mcomplex)},
                   "model": {"name": "eghn"}, "paper_reference": "table1/EGHN/single (3,3)"})
    test, val = reference_mses(cfg), reference_mses(cfg, "val")
    assert [r.key for r in val] == ["linear_extrapolation"]  # no paper number beside a validation MSE
    assert val[0].t == test[0].t and val[0].mse != test[0].mse
    with pytest.raises(ValueError, match="split must be"):
        reference_mses(cfg, "validation")
