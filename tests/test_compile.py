"""``train.compile``: the compiled training step (:mod:`eghn.train.compiled`).

Dynamo traces every model variant's training step (forward, Eq. 16 loss, backward) in one
graph, without a graph break, and batches of other sizes reuse it; compiled and eager models
agree (losses and gradients, float32); the compiled EGHN stays equivariant; ``eghn train``
compiles only when asked or, under ``"auto"``, where measured faster, and logs the compile time.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from _train_toy import toy_config
from torch._dynamo.utils import counters

import eghn.models
from eghn.data import collate
from eghn.models import EGHN, ModelOutput
from eghn.nn import invariants, pool_ops, scatter
from eghn.testing import TOLERANCES, equivariance_error
from eghn.testing.strategies import random_graph
from eghn.train.compiled import CompiledForward, auto_decision, resolve_compile, trace_report
from eghn.train.config import ConfigError, resolve
from eghn.train.objective import training_objective

#: the default config's messages (eghn/configs/default.toml): bounded, a stabiliser
BOUNDED = dict(coord_message="bounded", pool_message="bounded")


def _eghn(clusters, **kw):
    return EGHN(2, 2, 2, hidden=8, clusters=clusters, enc_layers=1, pool_layers=1, dec_layers=1, **kw)


MODELS = {
    "L1": lambda: _eghn([3], **BOUNDED),
    "L2": lambda: _eghn([4, 2], **BOUNDED),
    "L3": lambda: _eghn([6, 3, 2], **BOUNDED),
    "L1-paper": lambda: _eghn([3]),
    "L2-paper": lambda: _eghn([4, 2]),
    "L3-paper": lambda: _eghn([6, 3, 2]),
    # motion-capture-like inputs: the released features, the height divided by its batch maximum
    "released": lambda: EGHN.released(2, 2, 2, clusters=5, hidden=8, layers=1, pool_layers=1,
                                      batch_max_features=[1]),
    "egnn": lambda: eghn.models.get("egnn", node_dim=2, edge_dim=2, local_edge_dim=2, hidden=8, layers=2),
}
#: batches of several graphs: M-complex-like systems of equal size, then mixed sizes
SIZES = [(9, 9, 9), (7, 11, 12), (10, 10), (8, 8, 8, 8), (6, 13, 9, 7, 11), (14, 14, 14)]


def _graph(sizes=(12, 9, 14), dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return collate([random_graph(n, node_dim=2, edge_dim=2, local_edge_dim=2, edge_prob=0.4, target=True,
                                 generator=gen) for n in sizes]).to(dtype=dtype)


def _batches(sizes=SIZES):
    return [_graph(s, seed=k) for k, s in enumerate(sizes)]


def _loss_and_grads(fn, model, g):
    model.zero_grad(set_to_none=True)
    loss = training_objective(fn(g), g.target).loss  # MSE + aux["reg_loss"]
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


#: L = 1 runs every piece of code of the deeper hierarchies (its clusters get a graph and a
#: decoder too); L = 2 and 3 repeat them, at a few times the tracing time
DEEPER = {"L2", "L3", "L2-paper", "L3-paper"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEPER else n for n in MODELS])
def test_training_step_traces_in_one_graph(name):
    """No graph break in the forward or backward pass of any variant, and batches of other node,
    edge and graph counts run the same graph (no recompilation)."""
    torch.manual_seed(0)
    report = trace_report(MODELS[name](), _batches())
    assert report.graph_breaks == [], "\n".join(report.graph_breaks)
    assert report.graphs == 1 and report.recompiles == [], report.recompiles


def test_a_single_graph_batch_compiles_once_more():
    """A batch of one graph after batches of several compiles one more graph (a size of 1 is
    always specialised); every later batch, of either kind, reuses one of the two."""
    torch.manual_seed(0)
    batches = [*_batches(SIZES[:2]), _graph((12,), seed=7), _graph((9,), seed=8), *_batches(SIZES[2:4])]
    report = trace_report(MODELS["L1"](), batches)
    assert report.graph_breaks == []
    assert report.graphs == 2 and len(report.recompiles) == 1, report.recompiles
    assert "num_graphs" in report.recompiles[0]


class _DataDependent(torch.nn.Module):
    """A branch on a tensor's value: the kind of code that breaks a graph."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, g):
        x = self.lin(g.pos)
        if bool((x > 0).any()):
            x = 2 * x
        return ModelOutput(pos=x)


def _uniform_graph_size_always(batch, num_graphs):
    """``scatter.uniform_graph_size`` without its shape-static path under ``torch.compile``."""
    n = batch.shape[0] // num_graphs
    expected = torch.arange(num_graphs, device=batch.device).repeat_interleave(n)
    return n if batch.shape[0] % num_graphs == 0 and torch.equal(batch, expected) else None


def test_trace_report_sees_breaks_and_recompiles(monkeypatch):
    """The checks above can fail: a data-dependent branch is reported as a graph break (with
    its place), in a toy model and in EGHN with the equal-size test of the scatter helpers made
    to read ``batch`` while compiling; static shapes recompile for every new batch size."""
    report = trace_report(_DataDependent(), [_graph()])
    assert len(report.graph_breaks) == 1 and "test_compile.py" in report.graph_breaks[0], report.graph_breaks
    assert report.graphs == 2

    for module in (scatter, pool_ops, invariants):
        monkeypatch.setattr(module, "uniform_graph_size", _uniform_graph_size_always)
    torch.manual_seed(0)
    report = trace_report(MODELS["L1"](), [_graph((9, 9, 9))])  # graphs of equal sizes: batch is read
    assert len(report.graph_breaks) > 0 and report.graphs > 1
    monkeypatch.undo()

    report = trace_report(MODELS["egnn"](), _batches(SIZES[:3]), dynamic=False)
    assert report.graph_breaks == [] and report.graphs == 3 and len(report.recompiles) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["L2", "released", "egnn"])
def test_compiled_matches_eager(name):
    """Inductor's compiled step gives the eager loss and gradients to 1e-5 (float32), on an
    M-complex-like batch of equal sizes and on batches of mixed sizes."""
    torch.manual_seed(0)
    eager = MODELS[name]()
    twin = copy.deepcopy(eager)
    fwd = CompiledForward(twin)
    for k, sizes in enumerate([(9, 9, 9), (9, 9, 9), (12, 9, 14), (10, 16)]):
        g = _graph(sizes, seed=k)
        le, ge = _loss_and_grads(eager, eager, g)
        lc, gc = _loss_and_grads(fwd, twin, g)
        assert fwd.compile_s is not None
        assert abs(float(lc) - float(le)) <= 1e-5 * abs(float(le)), (sizes, float(lc), float(le))
        assert len(ge) == len(gc) > 0
        for a, b in zip(ge, gc):
            assert (a - b).norm() <= 1e-5 * a.norm() + 1e-7, sizes
    assert counters["stats"]["unique_graphs"] >= 1  # Dynamo compiled the model
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])


@pytest.mark.slow
def test_compiled_model_is_equivariant():
    g = _graph(dtype=torch.float64)
    torch.manual_seed(0)
    model = MODELS["L2"]().double()
    fwd = CompiledForward(model)
    errors = equivariance_error(fwd, g, outputs={"pos": "position"}, trials=1)
    assert fwd.compile_s is not None and counters["stats"]["unique_graphs"] >= 1
    assert max(errors.values()) < TOLERANCES[torch.float64], errors


def test_validation_stays_outside_the_compiled_region():
    """The compiled forward pass still rejects a bad graph with the model's own message,
    before anything is compiled."""
    model = MODELS["L1-paper"]()
    fwd = CompiledForward(model)
    with pytest.raises(ValueError, match="float64 but the model is float32"):
        fwd(_graph(dtype=torch.float64))
    with pytest.raises(ValueError, match="K = 3 clusters needs at least 3"):
        fwd(_graph(sizes=(12, 2)))
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
    logged = [line for line in lines if line.startswith("compile: compiled the training step in ")]
    assert len(logged) == 1, lines  # once, though every step runs the compiled model
    secs = float(logged[0].removeprefix("compile: compiled the training step in ").split()[0])
    assert 0 <= secs <= result.wall_s + 0.05  # part of the run's wall time (rounded to 0.1 s)
    lines.clear()
    cfg = toy_config(tmp_path, epochs=1, threads=1, compile="auto")
    train(cfg, tmp_path / "auto", echo=lines.append)
    assert any(line.startswith("compile: off (") for line in lines), lines
    assert not any("compiled the training step" in line for line in lines), lines
