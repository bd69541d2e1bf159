"""``train.compile``: the training forward pass through :func:`torch.compile`.

:class:`CompiledForward` validates the input graph eagerly (the model's own checks), calls the
compiled model (``dynamic=True``: batches of different sizes reuse one graph), and checks the
output eagerly; inside the compiled region the models skip their checks
(``torch.compiler.is_compiling()``), and the data-dependent branches of the scatter helpers take
a shape-static path, so that Dynamo traces the forward pass in few pieces.

``"auto"`` compiles only where compiling has been *measured* faster: it reads the table
``benchmarks/results/compile_auto.json`` (``{"faster": [{"device": "cuda", "model": "eghn"},
...]}``), and turns compile on for a run whose device type and model name are listed there.
The table is empty until such measurements exist, so ``"auto"`` is off today.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["AUTO_TABLE", "CompiledForward", "auto_decision", "resolve_compile"]

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
