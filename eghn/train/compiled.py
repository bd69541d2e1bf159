"""``train.compile``: the training forward pass through :func:`torch.compile`.

:class:`CompiledForward` validates the input graph eagerly (the model's own checks), calls the
compiled model (``dynamic=True``: batches of different sizes reuse one graph), and checks the
output eagerly; inside the compiled region the models skip their checks
(``torch.compiler.is_compiling()``), and the data-dependent branches of the scatter helpers take
a shape-static path, so that Dynamo traces EGHN (every form) and EGNN in one graph, forward and
backward, without a graph break. :func:`trace_report` counts the breaks and the graphs compiled
over a few training steps (``tests/test_compile.py``, ``benchmarks/compile.py --breaks-only``).

Batches of other sizes reuse the graph (``dynamic=True``: node, edge and graph counts are
symbolic). What still compiles a second graph: a batch of a single graph after batches of
several (sizes 0 and 1 are always specialised), and on Inductor's CPU backend a batch on the
other side of one of its size thresholds (e.g. a float32 sum over more than 4,096 elements is
generated with an extra accumulator); each such graph is compiled once and kept.

``"auto"`` compiles only where compiling has been *measured* faster: it reads the table
``benchmarks/results/compile_auto.json`` (``{"faster": [{"device": "cuda", "model": "eghn"},
...]}``), and turns compile on for a run whose device type and model name are listed there.
The table is empty until such measurements exist, so ``"auto"`` is off today.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["AUTO_TABLE", "CompiledForward", "TraceReport", "auto_decision", "resolve_compile", "trace_report"]

#: measured configurations where the compiled training step is faster (read by "auto")
AUTO_TABLE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "compile_auto.json"


def auto_decision(device: torch.device, model_name: str, table: Path | None = None) -> tuple[bool, str]:
    """``(compile?, why)`` for ``train.compile = "auto"``.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> import torch
        >>> from eghn.train.compiled import auto_decision
        >>> table = Path(tempfile.mkdtemp()) / "compile_auto.json"
        >>> _ = table.write_text(json.dumps({"faster": [{"device": "cuda", "model": "eghn"}]}))
        >>> auto_decision(torch.device("cuda"), "eghn", table)[0], auto_decision(torch.device("cpu"), "eghn", table)[0]
        (True, False)
    """
    path = AUTO_TABLE if table is None else table
    try:
        rows = json.loads(path.read_text()).get("faster", [])
    except (OSError, ValueError):
        return False, f"no table of measured configurations ({path.name} not found): compile off"
    for row in rows:
        if row.get("device") == device.type and row.get("model") == model_name:
            return True, f"measured faster for {model_name} on {device.type} ({path.name})"
    return False, (f"{model_name} on {device.type} is not among the configurations measured faster "
                   f"({len(rows)} in {path.name}): compile off")


def resolve_compile(setting: str, device: torch.device, model_name: str) -> tuple[bool, str]:
    """``(compile?, why)`` for a ``train.compile`` setting.

    Example:
        >>> import torch
        >>> from eghn.train.compiled import resolve_compile
        >>> resolve_compile("on", torch.device("cpu"), "egnn"), resolve_compile("off", torch.device("cpu"), "egnn")
        ((True, 'train.compile = on'), (False, 'train.compile = off'))
    """
    if setting == "on":
        return True, "train.compile = on"
    if setting == "auto":
        return auto_decision(device, model_name)
    return False, "train.compile = off"


class CompiledForward:
    """``model(graph)`` with the model compiled and the checks kept outside the compiled region.

    Attributes:
        compile_s: seconds of the first call (tracing and compiling included), ``None`` before it.

    Example:
        Skipped when the docs are tested: loading the compiler takes seconds, and the first call compiles.

        >>> import torch
        >>> from eghn.train.compiled import CompiledForward
        >>> fwd = CompiledForward(torch.nn.Linear(3, 3))  # doctest: +SKIP
        >>> fwd.compile_s is None  # doctest: +SKIP
        True
    """

    def __init__(self, model: nn.Module, **compile_kwargs: Any) -> None:
        self.model = model
        self.compiled = torch.compile(model, **{"dynamic": True, **compile_kwargs})
        self.compile_s: float | None = None

    def validate(self, graph):
        check = getattr(self.model, "validate_input", None)
        if check is not None:
            return check(graph)
        graph.validate()
        return graph

    def __call__(self, graph):
        graph = self.validate(graph)
        t0 = time.perf_counter() if self.compile_s is None else None
        out = self.compiled(graph)
        if t0 is not None:
            self.compile_s = time.perf_counter() - t0
        check = getattr(self.model, "check_output", None)
        if check is not None:
            check(graph, out.pos)
        return out


@dataclass
class TraceReport:
    """What Dynamo did over a few training steps of a compiled model (:func:`trace_report`).

    Attributes:
        graph_breaks: one entry per graph break: the first line of Dynamo's reason and where in
            the code it happened.
        graphs: graphs compiled: 1 without breaks or recompilations; every break and every
            recompilation adds graphs.
        recompiles: why Dynamo compiled again: at each recompilation, the failed guard of every
            graph compiled before it.

    Example:
        >>> from eghn.train.compiled import TraceReport
        >>> len(TraceReport(["Unsupported Tensor.item() call (at model.py:12)"], graphs=2).graph_breaks)
        1
    """

    graph_breaks: list[str]
    graphs: int
    recompiles: list[str] = field(default_factory=list)


def _where(frame) -> str:
    path = frame.filename.replace("\\", "/")
    return f"{path[path.rindex('/eghn/') + 1:] if '/eghn/' in path else Path(path).name}:{frame.lineno}"


def trace_report(model: nn.Module, graphs: Iterable[Any], *, backend: str = "aot_eager",
                 loss: Callable[[Any, Any], torch.Tensor] | None = None, **compile_kwargs: Any) -> TraceReport:
    """Training steps of ``model`` through :class:`CompiledForward`, one per graph of ``graphs``
    (forward, loss, ``backward``; no optimiser step), and what Dynamo did meanwhile.

    The backward pass runs through AOTAutograd's graph of the compiled forward pass, so a
    graph break in either shows up here. ``backend="aot_eager"`` (default) traces forward and
    backward as Inductor would but runs them eagerly, without generating kernels: the breaks
    and Dynamo's own recompilations are those of ``train.compile``; Inductor may add guards
    of its own (see the module docstring), which ``backend="inductor"`` shows.

    Resets Dynamo's caches and counters first, and the model's gradients (``None``) last.

    Args:
        model: the model, as :class:`CompiledForward` takes it.
        graphs: batches with ``target``.
        backend: the :func:`torch.compile` backend.
        loss: ``loss(out, graph)``, default the training objective (Eq. 16: MSE plus
            ``aux["reg_loss"]``).
        compile_kwargs: further arguments of :func:`torch.compile` (``dynamic=True`` unless given).

    Example:
        Skipped when the docs are tested: tracing takes seconds.

        >>> import torch
        >>> from eghn.data import collate
        >>> from eghn.models import EGNN
        >>> from eghn.testing.strategies import random_graph
        >>> from eghn.train.compiled import trace_report
        >>> g = collate([random_graph(6, target=True, dtype=torch.float32)])
        >>> trace_report(EGNN(node_dim=2, hidden=8, layers=1), [g]).graph_breaks  # doctest: +SKIP
        []
    """
    from torch._dynamo.utils import counters, graph_break_reasons, guard_failures

    from .objective import training_objective

    if loss is None:
        def loss(out, g):
            return training_objective(out, g.target).loss
    torch._dynamo.reset()  # clears graph_break_reasons and guard_failures
    counters.clear()
    try:
        fwd = CompiledForward(model, backend=backend, **compile_kwargs)
        for g in graphs:
            model.zero_grad(set_to_none=True)
            loss(fwd(g), g).backward()
        breaks = [r.reason.strip().split("\n")[0] + (f" (at {_where(r.user_stack[-1])})" if r.user_stack else "")
                  for r in graph_break_reasons]
        recompiles = [str(r) for failures in guard_failures.values() for r in failures]
        return TraceReport(breaks, graphs=int(counters["stats"]["unique_graphs"]), recompiles=recompiles)
    finally:
        model.zero_grad(set_to_none=True)
