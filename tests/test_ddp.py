"""DistributedDataParallel on CPU (gloo, 2 processes) reproduces the single-process loss curve."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from eghn.train.checkpoint import load_checkpoint
from eghn.train.distributed import DistInfo, shard

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _worker(rank: int, world: int, init_file: str, run_dir: str, tests_dir: str) -> None:
    sys.path.insert(0, tests_dir)
    from _train_toy import toy_config

    from eghn.train.loop import train

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = toy_config(Path(run_dir).parent, epochs=4, eval_every=1, batch_size=9, threads=1)
        res = train(cfg, run_dir, info=DistInfo(rank, world), echo=lambda _m: None)
        if rank == 0:
            Path(run_dir, "history.json").write_text(json.dumps(res.history))
        # both ranks leave together: a rank that tears gloo down while the other still talks to it
        # can abort at exit ("terminate called without an active exception", seen once in CI)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _curve(history):
    return [(h["epoch"], h["train_loss"], h["val_mse"], h["test_mse"]) for h in history]


def test_two_process_gloo_matches_single_process(tmp_path):
    from _train_toy import toy_config

    from eghn.train.loop import train

    cfg = toy_config(tmp_path, epochs=4, eval_every=1, batch_size=9, threads=1)
    single = train(cfg, tmp_path / "single", echo=lambda _m: None)
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp"), str(Path(__file__).parent)),
             nprocs=2, join=True)
    ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert len(ddp) == len(single.history) == 4
    for a, b in zip(_curve(single.history), _curve(ddp)):
        assert a[0] == b[0]
        assert a[1:] == pytest.approx(b[1:], rel=1e-6, abs=1e-12)
    # the final weights agree as well
    w1 = load_checkpoint(tmp_path / "single" / "last.pt")["model"]
    w2 = load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    assert all(torch.allclose(w1[k], w2[k], rtol=1e-6, atol=1e-10) for k in w1)


def test_shard_splits_a_global_batch_contiguously():
    idx = torch.arange(9)
    parts = [shard(idx, DistInfo(r, 2)) for r in range(2)]
    assert torch.equal(torch.cat(parts), idx) and [p.numel() for p in parts] == [5, 4]
    assert torch.equal(shard(idx, DistInfo()), idx)
