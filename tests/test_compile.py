"""``train.compile``: the compiled training forward pass (:mod:`eghn.train.compiled`).

Compiled and eager models agree (losses and gradients, float32), the compiled EGHN stays
equivariant, Dynamo traces each model in as few pieces as recorded here, and ``eghn train``
compiles only when asked or, under ``"auto"``, where measured faster.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from _train_toy import toy_config

import eghn.models
from eghn.data import collate
from eghn.models import EGHN
from eghn.testing import equivariance_error
from eghn.testing.strategies import random_graph
from eghn.train.compiled import CompiledForward, auto_decision, resolve_compile
from eghn.train.config import ConfigError, resolve

MODELS = {
    "L1": lambda: EGHN(2, 2, 1, hidden=8, clusters=[4], enc_layers=1, pool_layers=1, dec_layers=1),
    "L2": lambda: EGHN(2, 2, 1, hidden=8, clusters=[5, 3], enc_layers=1, pool_layers=1, dec_layers=1),
    "L3": lambda: EGHN(2, 2, 1, hidden=8, clusters=[6, 3, 2], enc_layers=1, pool_layers=1, dec_layers=1),
    "released": lambda: EGHN.released(2, 2, 1, clusters=4, hidden=8, layers=1, pool_layers=1),
    "egnn": lambda: eghn.models.get("egnn", node_dim=2, edge_dim=2, local_edge_dim=1),
}
#: graph breaks torch._dynamo.explain reports for each model's forward pass (at most)
GRAPH_BREAKS = {"L1": 0, "L2": 0, "L3": 0, "released": 0, "egnn": 0}


def _graph(dtype=torch.float32, sizes=(12, 9, 14)):
    gen = torch.Generator().manual_seed(0)
    return collate([random_graph(n, node_dim=2, edge_dim=2, local_edge_dim=1, edge_prob=0.3, target=True,
                                 generator=gen) for n in sizes]).to(dtype=dtype)


def _loss_and_grads(fn, model, g):
    model.zero_grad(set_to_none=True)
    out = fn(g)
    loss = ((out.pos - g.target) ** 2).mean() + out.aux.get("reg_loss", 0.0)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", list(GRAPH_BREAKS))
def test_graph_breaks(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    explained = torch._dynamo.explain(model)(_graph())
    reasons = [b.reason.splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_break_count <= GRAPH_BREAKS[name], reasons


@pytest.mark.slow
@pytest.mark.parametrize("name", ["L2", "released"])
def test_compiled_matches_eager(name):
    g = _graph()
    torch.manual_seed(0)
    eager = MODELS[name]()
    twin = copy.deepcopy(eager)
    fwd = CompiledForward(twin)
    for _ in range(2):  # the second call runs the compiled code without compiling
        le, ge = _loss_and_grads(eager, eager, g)
        lc, gc = _loss_and_grads(fwd, twin, g)
        assert fwd.compile_s is not None
        assert abs(float(lc) - float(le)) <= 1e-5 * abs(float(le))
        assert len(ge) == len(gc)
        for a, b in zip(ge, gc):
            assert (a - b).norm() <= 1e-5 * a.norm() + 1e-7
    # a batch of other sizes reuses the dynamic graph and still agrees
    g2 = _graph(sizes=(10, 16))
    le, _ = _loss_and_grads(eager, eager, g2)
    lc, _ = _loss_and_grads(fwd, twin, g2)
    assert abs(float(lc) - float(le)) <= 1e-5 * abs(float(le))


@pytest.mark.slow
def test_compiled_model_is_equivariant():
    g = _graph(torch.float64)
    torch.manual_seed(0)
    model = MODELS["L2"]().double()
    errors = equivariance_error(CompiledForward(model), g, outputs={"pos": "position"}, trials=1)
    assert max(errors.values()) < 1e-9, errors


def test_validation_stays_outside_the_compiled_region():
    """The compiled forward pass still rejects a bad graph with the model's own message,
    before anything is compiled."""
    model = MODELS["L1"]()
    fwd = CompiledForward(model)
    with pytest.raises(ValueError, match="float64 but the model is float32"):
        fwd(_graph(torch.float64))
    with pytest.raises(ValueError, match="K = 4 clusters needs at least 4"):
        fwd(_graph(sizes=(12, 3)))
    assert fwd.compile_s is None


def test_config_and_auto(tmp_path):
    raw = {"data": {"name": "_toy"}, "model": {"name": "_toy"}}
    assert resolve(raw)["train"]["compile"] == "off"
    with pytest.raises(ConfigError, match="compile"):
        resolve(dict(raw, train={"compile": "yes"}))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile("off", cpu, "eghn")[0] is False
    assert resolve_compile("on", cpu, "eghn")[0] is True
    on, why = resolve_compile("auto", cuda, "eghn")  # the shipped table: nothing measured faster yet
    assert on is False and "compile off" in why
    table = tmp_path / "compile_auto.json"
    table.write_text(json.dumps({"faster": [{"device": "cuda", "model": "eghn"}]}))
    assert auto_decision(cuda, "eghn", table)[0] is True
    assert auto_decision(cpu, "eghn", table)[0] is False
    assert auto_decision(cuda, "eghn", tmp_path / "missing.json")[0] is False


def test_train_logs_compile(tmp_path):
    from eghn.train.loop import train

    lines = []
    cfg = toy_config(tmp_path, epochs=2, threads=1, compile="on")
    result = train(cfg, tmp_path / "run", echo=lines.append)
    assert any(line.startswith("compile: on") for line in lines), lines
    assert any("first compiled forward pass took" in line for line in lines), lines
    assert result.wall_s > 0
    lines.clear()
    cfg = toy_config(tmp_path, epochs=1, threads=1, compile="auto")
    train(cfg, tmp_path / "auto", echo=lines.append)
    assert any(line.startswith("compile: off (") for line in lines), lines
