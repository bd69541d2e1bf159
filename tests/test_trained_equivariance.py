"""Equivariance of *trained* models: EGHN and every equivariant baseline trained through the
package for a few hundred steps, then checked on the whole test split in float64 (rotations,
reflections, translations of 1e3, permutations) and through ``eghn evaluate``."""

from __future__ import annotations

import json

import pytest

import eghn.models
from eghn.cli import main
from eghn.train.checkpoint import load_checkpoint
from eghn.train.config import resolve
from eghn.train.equivariance import trained_equivariance_error
from eghn.train.loop import train

#: small models that train a few hundred steps in seconds on a CPU
CONFIGS: dict[str, dict] = {
    "eghn": dict(hidden=16, clusters=[3], enc_layers=2, pool_layers=1, dec_layers=1),
    "tfn": dict(hidden=4, layers=2, lmax=1),
    "se3_transformer": dict(hidden=4, layers=2, lmax=1, heads=2),
}
DEFAULT = dict(hidden=16, layers=2)
ALL = ("rotation", "reflection", "translation", "permutation")
EQUIVARIANT = [n for n in eghn.models.available() if not n.startswith("_")
               and set(getattr(eghn.models.registry.get_class(n), "symmetries", ALL)) == set(ALL)]


def _config(tmp_path, root, name: str, epochs: int, lr: float = 5e-3) -> dict:
    return resolve({"name": name, "seed": 5, "device": "cpu", "out_dir": str(tmp_path),
                    "data": {"name": "mcomplex", "root": str(root)},
                    "model": {"name": name, **CONFIGS.get(name, DEFAULT)},
                    "train": {"epochs": epochs, "batch_size": 10, "eval_every": 10, "lr": lr, "progress": False,
                              "threads": 1, "patience": 1000}})


def test_every_equivariant_model_is_listed():
    assert {"eghn", "egnn", "gmn", "rf", "tfn", "se3_transformer"} <= set(EQUIVARIANT)


@pytest.mark.slow
@pytest.mark.parametrize("name", EQUIVARIANT)
def test_trained_model_is_equivariant(name, tmp_path, small_mcomplex, capsys):
    """300 training steps (50 epochs of 6 batches), then: float64 equivariance on the whole test
    split <= 1e-9 with translations of at least 1e3; `eghn evaluate --rotate --translate 1000`
    equal to the plain MSE (relative 1e-4 in float32, 1e-9 in float64)."""
    run = tmp_path / name
    cfg = _config(tmp_path, small_mcomplex, name, epochs=50, lr=1e-2 if name == "eghn" else 5e-3)
    res = train(cfg, run, echo=lambda _: None)
    assert res.epochs == 50 and res.best_val < res.history[0]["val_mse"] * 1.5
    state = load_checkpoint(run / "best.pt")
    saved = json.loads((run / "config.json").read_text())
    report = trained_equivariance_error(saved, state["model"])
    assert report.graphs == 30 and report.translation_scale >= 1e3
    assert report.passed(1e-9), report.summary()

    def mse(*args: str) -> dict:
        assert main(["evaluate", str(run), "--json", *args]) == 0
        return json.loads(capsys.readouterr().out)

    for dtype, rel in (("float32", 1e-4), ("float64", 1e-9)):
        out = mse("--rotate", "--translate", "1000", "--dtype", dtype)
        assert out["dtype"] == dtype
        assert out["mse_transformed"] == pytest.approx(out["mse"], rel=rel), (dtype, out)
