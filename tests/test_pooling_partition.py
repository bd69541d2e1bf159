"""``benchmarks/pooling_partition.py``: a trained E-Pool's grouping against the systems' complexes."""

from __future__ import annotations

import json

import pytest
import torch
from _scripts import load_script

from eghn.train import train
from eghn.train.config import load_config


@pytest.fixture(scope="module")
def part():
    return load_script("benchmarks/pooling_partition.py")


def test_complex_labels_follow_chains_of_any_length(part):
    chain = torch.tensor([[4, 3, 2, 1, 6], [3, 2, 1, 0, 7]])  # 0-1-2-3-4 only through four hops
    assert part.complex_labels(chain, 9).tolist() == [0, 0, 0, 0, 0, 5, 6, 6, 8]
    assert part.complex_labels(torch.zeros(2, 0, dtype=torch.long), 3).tolist() == [0, 1, 2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_partition_needs_whole_complexes_in_distinct_clusters(part, dtype):
    labels = torch.tensor([0, 0, 0, 3, 3, 5, 5, 5, 5])  # complexes of 3, 2 and 4 particles
    batch = torch.zeros(9, dtype=torch.long)

    def exact(hard: list[int]) -> bool:
        S = torch.eye(3, dtype=dtype)[torch.tensor(hard)] * 0.8 + 0.2 / 3
        return bool(part.exact_partition(S, labels, batch, 1)[0])

    assert exact([0, 0, 0, 1, 1, 2, 2, 2, 2])
    assert exact([2, 2, 2, 0, 0, 1, 1, 1, 1])  # any naming of the clusters
    assert not exact([0, 0, 0, 0, 0, 2, 2, 2, 2])  # two complexes in one cluster
    assert not exact([0, 0, 1, 1, 1, 2, 2, 2, 2])  # a complex split between two
    # graphs of a batch are judged one by one
    S = torch.eye(3, dtype=dtype)[torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0, 0, 2, 2, 2, 2])]
    two = part.exact_partition(S, torch.cat([labels, labels + 9]), torch.arange(2).repeat_interleave(9), 2)
    assert two.tolist() == [True, False]


def test_size_patterns_tell_a_naming_by_complex_from_any_other(part):
    labels = torch.tensor([0, 0, 0, 3, 3, 5, 5, 5, 5] * 3) + torch.arange(3).repeat_interleave(9) * 9
    batch = torch.arange(3).repeat_interleave(9)
    by_size = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2] * 3)  # the same naming in every system
    S = torch.eye(3)[by_size]
    every = torch.ones(3, dtype=torch.bool)
    assert list(part.size_patterns(S, labels, batch, every).values()) == [3]
    mixed = by_size.clone()
    mixed[9:18] = torch.tensor([1, 1, 1, 0, 0, 2, 2, 2, 2])  # system 1 swaps two names
    counts = part.size_patterns(torch.eye(3)[mixed], labels, batch, every)
    assert sorted(counts.values()) == [1, 2] and counts[((2, 1), (3, 0), (4, 2))] == 2
    assert sum(part.size_patterns(S, labels, batch, torch.tensor([True, False, False])).values()) == 1


def test_a_trained_run_is_read_back_with_its_own_test_mse(part, tmp_path):
    cfg = load_config("default", ["train.epochs=2", "train.eval_every=1", "data.n_train=40", "data.n_val=20",
                                  "data.n_test=30", "model.hidden=16", "device=cpu"])
    result = train(cfg, tmp_path / "run", echo=lambda msg: None)
    out = tmp_path / "partition.json"
    assert part.main([f"r_s1={tmp_path / 'run'}", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    rec = doc["runs"]["r_s1"]
    assert doc["groups"]["r"]["runs"] == 1 and doc["groups"]["r"]["mse_all_mean"] == rec["mse_all"]
    last = part.analyse_run(tmp_path / "run", checkpoint="last")
    assert last["checkpoint"] == "last" and last["epoch"] == 2
    assert rec["systems"] == 30 and 0 <= rec["exact"] == 30 - rec["not_exact"] and 0 <= rec["soft"] <= 30
    assert rec["epoch"] == result.best_epoch
    assert set(rec["regulariser"]) == {"1", "2"}  # one per evaluation of metrics.csv
    assert all(value >= 0 for value in rec["regulariser"].values())
    assert (rec["patterns"] == 0) == (rec["exact"] == 0) and rec["patterns"] <= 6  # at most 3! namings
    assert rec["mse_all"] == pytest.approx(result.test, rel=1e-4)
    # the two kinds average to the whole, weighted by their counts
    parts = [(rec["mse_exact"], rec["exact"]), (rec["mse_other"], 30 - rec["exact"])]
    assert sum(m * n for m, n in parts if n) / 30 == pytest.approx(rec["mse_all"], rel=1e-5)


def test_a_run_of_another_model_is_refused(part, tmp_path):
    cfg = load_config("default", ["train.epochs=1", "data.n_train=20", "data.n_val=10", "data.n_test=10",
                                  "model.name=egnn", "device=cpu"])
    cfg["model"] = {"name": "egnn", "hidden": 8, "layers": 1}
    train(cfg, tmp_path / "run", echo=lambda msg: None)
    with pytest.raises(ValueError, match="not eghn"):
        part.analyse_run(tmp_path / "run")
