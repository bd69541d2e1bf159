"""The two protocols of the shipped configs: ``released`` (the authors' released code) and ``paper``."""

from __future__ import annotations

import pytest
import torch
from _train_toy import toy_config

from eghn.models import get
from eghn.train.config import ConfigError, apply_protocol, list_configs, load_config


def test_every_paper_config_names_both_protocols():
    names = [n for n in list_configs() if n != "default"]
    assert names
    for n in names:
        for proto in ("released", "paper"):
            cfg = load_config(n, protocol=proto)
            assert cfg["protocol"] == proto, n
        assert load_config(n)["protocol"] == "released", n  # the default of every paper config


@pytest.mark.parametrize(("subject", "n_released", "n_paper"), [("run", 400, 200), ("walk", 1100, 200)])
def test_mocap_protocols(subject, n_released, n_paper):
    rel = load_config(f"mocap/{subject}_eghn")
    assert rel["data"]["features"] == "released" and rel["data"]["train"]["max_samples"] == n_released
    assert rel["train"]["drop_last"] and rel["model"]["batch_max_features"] == [1]
    pap = load_config(f"mocap/{subject}_eghn", ["protocol=paper"])
    assert pap["protocol"] == "paper" and pap["data"]["features"] == "paper"
    assert pap["data"]["train"]["max_samples"] == n_paper and not pap["train"]["drop_last"]
    # --set wins over the protocol tables, [quick] too
    q = load_config(f"mocap/{subject}_egnn", ["data.train.max_samples=80"], quick=True)
    assert q["data"]["train"]["max_samples"] == 80 and q["protocol"] == "released"


def test_released_architecture_config_has_the_authors_parameter_count():
    cfg = load_config("mocap/run_eghn_released")
    opts = {k: v for k, v in cfg["model"].items() if k != "name"}
    model = get("eghn", node_dim=2, edge_dim=2, local_edge_dim=2, **opts)  # the released mocap inputs
    assert sum(p.numel() for p in model.parameters()) == 362_032


def test_protein_released_protocol_is_the_released_md_config():
    cfg = load_config("protein/adk_eghn")
    assert cfg["data"]["cutoff"] == 8.0 and cfg["data"]["delta"] == 15
    assert (cfg["train"]["batch_size"], cfg["train"]["lr"], cfg["train"]["weight_decay"]) == (8, 5e-5, 1e-4)
    assert (cfg["model"]["hidden"], cfg["model"]["clusters"], cfg["model"]["lam"]) == (128, [20], 2.0)
    assert load_config("protein/adk_eghn", protocol="paper")["data"]["cutoff"] == 10.0


def test_reproduce_takes_the_protocol_as_an_argument(tmp_path):
    from eghn.train.reproduce import reproduce

    with pytest.raises(ValueError, match="unknown protocol"):
        reproduce("table2", protocol="authors", out=tmp_path)
    with pytest.raises(ValueError, match="--protocol"):
        reproduce("table2", overrides=["protocol=paper"], out=tmp_path)


def test_apply_protocol_errors():
    raw = {"protocol": "released", "protocols": {"released": {}, "paper": {}}}
    with pytest.raises(ConfigError, match="not defined"):
        apply_protocol(raw, "other")
    with pytest.raises(ConfigError, match="follows protocol 'paper' only"):
        apply_protocol({"protocol": "paper"}, "released")
    assert apply_protocol({}, "released")["protocol"] == "released"
    with pytest.raises(ConfigError, match="one table"):
        apply_protocol({"protocols": {"released": 3}})


def test_drop_last_skips_the_smaller_training_batch(tmp_path, monkeypatch):
    from eghn.train import loader
    from eghn.train.loop import train

    sizes: list[int] = []
    orig = loader.GraphBank.batch

    def spy(self, idx):
        if self.size == 20:  # the training bank (val and test hold 16 graphs)
            sizes.append(len(idx))
        return orig(self, idx)

    monkeypatch.setattr(loader.GraphBank, "batch", spy)
    data = {"name": "_toy", "size": 20, "val": {"size": 16}, "test": {"size": 16}}
    for drop, expected in ((False, [8, 8, 4] * 2), (True, [8, 8] * 2)):
        sizes.clear()
        cfg = toy_config(tmp_path / str(drop), epochs=2, eval_every=2, drop_last=drop, threads=1) | {"data": data}
        cfg["protocol"] = "released"
        res = train(cfg, tmp_path / f"run{drop}")
        assert sorted(sizes) == sorted(expected)
        assert res.protocol == "released"
        assert torch.isfinite(torch.tensor(res.test))
