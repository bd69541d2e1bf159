"""Benchmark tables rendered from the result files in ``benchmarks/results/``.

``.. eghn-bench:: KIND`` with ``:source: NAME`` (``benchmarks/results/NAME.json``) renders

* ``provenance``: machine, PyTorch, commit, date and command of a result file;
* ``side-by-side``: step times of the authors' code and eghn's two models, ratios, spread and
  the matrix-product floor (``benchmarks/side_by_side.py``);
* ``side-by-side-compiled``: ``side_by_side.py --compiled``: eghn's models eager and compiled
  against the authors' code, timed in the same rounds;
* ``memory``: memory above the torch import and step memory of the same (one process each);
* ``fast-paths``: step time of each variant of ``benchmarks/fast_paths.py`` relative to eghn,
  with its step memory;
* ``malloc``: the gain of :func:`eghn.train.malloc.reuse_freed_memory` (``fast_paths.py --malloc``);
* ``scale``: ``benchmarks/bench_eghn.py --out``: time and memory per step by system size;
* ``compile``: ``benchmarks/compile.py``;
* ``compile-breaks``: ``benchmarks/compile.py --breaks-only``: graph breaks and graphs compiled
  per model variant;
* ``epoch-share``: ``benchmarks/epoch_share.py``;
* ``profile``: ``benchmarks/profile_step.py``;
* ``models``: ``benchmarks/bench_models.py --out``; ``simulator``: ``benchmarks/bench_mcomplex.py --out``;
* ``memory-breakdown``: ``benchmarks/memory_breakdown.py``: what autograd keeps for the
  backward pass, by size class and module, and the steady step memory, per model;
* ``time-to-accuracy``: ``benchmarks/time_to_accuracy.py analyse``: per run, its length and
  best epoch, and the wall time and epoch at which it first reached the authors' best
  validation MSE and the paper's test MSE, with the authors' time over eghn's;
* ``gpu-suite`` (no source): one row per part of ``benchmarks/gpu_suite.py`` from
  ``benchmarks/results/gpu/PART.json``; a part without a file, or whose file comes from a
  ``--smoke`` run, shows as "not yet measured on a GPU", never with numbers.

Every number is a rendered result (see ``eghn_results``), so ``docs/check_site.py`` can tell it
from a hand-typed one. Inline values use the ``:result:`` role with the source
``bench/NAME``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from eghn_results import _table, load_source, render, result_node
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

_WORKLOADS = {
    "mocap": "motion capture (Run, batch 100)",
    "mocap-released": "motion capture, released architecture",
    "mcomplex55": "M-complex (5,5), batch 100",
    "mcomplex1010": "M-complex (10,10), batch 100",
    "adk": "AdK backbone, batch 8",
}
_MODELS = {"authors": "authors' code", "released": "eghn, released architecture", "default": "eghn, default model",
           "released_recompute": "eghn, released architecture, edge activations recomputed",
           "default_recompute": "eghn, default model, edge activations recomputed"}


def _workload(name: str) -> str:
    if name.startswith("radius-"):
        return f"radius graph, {int(name.split('-')[1]):,} nodes"
    return _WORKLOADS.get(name, name)


def _get(record: Any, key: str) -> Any:
    for part in key.split("."):
        record = record[int(part)] if isinstance(record, list) else record[part]
    return record


class _Cell:
    def __init__(self, source: str, path: str, record: Any) -> None:
        self.source, self.path, self.record = source, path, record

    def __call__(self, key: str, op: str = "", suffix: str = "") -> nodes.Node:
        return result_node(render(_get(self.record, key), op) + suffix, f"bench/{self.source}:{self.path}.{key}")

    def ratio(self, key: str, range_key: str) -> nodes.Node:
        return nodes.inline("", "", self(key, ":.2f", "x"), nodes.Text(" ("), self(range_key + ".0", ":.2f"),
                            nodes.Text("-"), self(range_key + ".1", ":.2f"), nodes.Text(")"))


def _provenance(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    m = data["machine"]
    c = _Cell(name, "", data)
    para = nodes.paragraph(classes=["eghn-measured"])
    para += nodes.Text("Measured on ")
    para += result_node(str(m["cpu"]), f"bench/{name}:machine.cpu")
    para += nodes.Text(" (")
    para += result_node(str(m["cores"]), f"bench/{name}:machine.cores")
    para += nodes.Text(" cores), PyTorch ")
    para += result_node(str(m["torch"]), f"bench/{name}:machine.torch")
    if "gpu" in m:
        para += nodes.Text(", ")
        para += result_node(str(m["gpu"]), f"bench/{name}:machine.gpu")
    para += nodes.Text(", eghn commit ")
    para += nodes.literal(str(data["commit"]), str(data["commit"]))
    para += nodes.Text(", ")
    para += c("date")
    para += nodes.Text(" (")
    para += nodes.literal(f"benchmarks/results/{name}.json", f"benchmarks/results/{name}.json")
    para += nodes.Text(")")
    out: list[nodes.Node] = [para]
    if data.get("command"):
        out.append(nodes.literal_block(data["command"], data["command"]))
    return out


def _side_by_side(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    key = "timing" if data.get("timing") else "per_process"  # one process, or one per model
    for k, t in enumerate(data[key]):
        c = _Cell(name, f"{key}.{k}", t)
        rows.append([
            _workload(t["workload"]), c("threads"),
            nodes.inline("", "", c("nodes", ":,"), nodes.Text(" / "), c("edges", ":,")) if "nodes" in t else "",
            nodes.inline("", "", c("models.authors.ms_per_step", ":.0f"), nodes.Text(" ("),
                         c("models.authors.spread", ":.2f"), nodes.Text(")")),
            nodes.inline("", "", c("models.released.ms_per_step", ":.0f"), nodes.Text(" ("),
                         c("models.released.spread", ":.2f"), nodes.Text(")")),
            c.ratio("models.released.ratio", "models.released.ratio_rounds"),
            nodes.inline("", "", c("models.default.ms_per_step", ":.0f"), nodes.Text(" ("),
                         c("models.default.spread", ":.2f"), nodes.Text(")")),
            c.ratio("models.default.ratio", "models.default.ratio_rounds"),
        ])
    header = ["workload", "threads", "nodes / edges", "authors ms (spread)", "released ms (spread)",
              "authors / released (rounds)", "default ms (spread)", "authors / default (rounds)"]
    return [_table(header, rows, [22, 6, 14, 12, 12, 14, 12, 14])]


def _side_by_side_compiled(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for k, t in enumerate(data["timing"]):
        c = _Cell(name, f"timing.{k}", t)
        for m in ("released", "default"):
            if f"{m}_compiled" not in t["models"]:
                continue
            rows.append([_workload(t["workload"]), c("threads"), _MODELS[m],
                         c.ratio(f"models.{m}.ratio", f"models.{m}.ratio_rounds"),
                         nodes.inline("", "", c(f"models.{m}_compiled.ms_per_step", ":.0f"), nodes.Text(" ms")),
                         c.ratio(f"models.{m}_compiled.ratio", f"models.{m}_compiled.ratio_rounds"),
                         c(f"models.{m}_compiled.first_step_s", ":.0f", " s"),
                         nodes.inline("", "", c(f"models.{m}.gemm_floor_ms", ":.0f"), nodes.Text(" ms"))])
    header = ["workload", "threads", "eghn model", "authors / eager (rounds)", "compiled ms",
              "authors / compiled (rounds)", "first compiled step", "matrix-product floor"]
    return [_table(header, rows, [20, 6, 18, 14, 9, 14, 9, 10])]


def _flops(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for k, t in enumerate(data["timing"]):
        c = _Cell(name, f"timing.{k}", t)
        for m in ("authors", "released", "default"):
            rows.append([
                _workload(t["workload"]), c("threads"), _MODELS[m], c(f"params.{m}", ":,"),
                c(f"models.{m}.gflop", ":.2f"), c("gemm_gflop_per_s", ":.0f"),
                c(f"models.{m}.gemm_floor_ms", ":.0f"), c(f"models.{m}.ms_per_step", ":.0f"),
            ])
    header = ["workload", "threads", "model", "parameters", "GFLOP per step", "GEMM GFLOP/s",
              "matrix-product floor ms", "measured ms"]
    return [_table(header, rows, [20, 6, 18, 10, 9, 9, 10, 9])]


def _memory(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    by = {(r["workload"], r["model"]): (k, r) for k, r in enumerate(data["memory"])}
    for k, r in enumerate(data["memory"]):
        c = _Cell(name, f"memory.{k}", r)
        ka, _ = by.get((r["workload"], "authors"), (None, None))
        share: nodes.Node | str = ""
        if r["model"] != "authors" and ka is not None:
            a = data["memory"][ka]
            share = result_node(render(r["step_mb"] / a["step_mb"], ":.2f"),
                                f"bench/{name}:memory.{k}.step_mb / memory.{ka}.step_mb")
        rows.append([_workload(r["workload"]), _MODELS[r["model"]], c("params", ":,"),
                     c("above_import_mb", ":.0f"), c("step_mb", ":.0f"), share])
    header = ["workload", "model", "parameters", "MB above the torch import", "step MB", "step memory / authors'"]
    return [_table(header, rows, [24, 20, 10, 12, 10, 10])]


def _memory_breakdown(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for k, r in enumerate(data["breakdown"]):
        c = _Cell(name, f"breakdown.{k}", r)
        by_size = nodes.inline("", "", *[x for j, cls in enumerate(("edge", "node", "other")) for x in (
            nodes.Text(" / " if j else ""), c(f"saved_by_size_mb.{cls}", ":.0f"))])
        top = next(iter(r["saved_by_module_share"]))
        rows.append([_workload(r["workload"]), _MODELS[r["model"]], c("saved_mb", ":.0f"),
                     c("saved_vs_authors", ":.2f") if "saved_vs_authors" in r else "", by_size,
                     nodes.inline("", "", nodes.literal(top, top), nodes.Text(" "),
                                  c(f"saved_by_module_share.{top}", "*100:.0f", " %")),
                     c("steady_step_mb", ":.0f"),
                     c("steady_step_vs_authors", ":.2f") if "steady_step_vs_authors" in r else ""])
    header = ["workload", "model", "kept for backward, MB", "/ authors'", "edge / node / other MB",
              "largest share (module)", "steady step MB", "/ authors'"]
    return [_table(header, rows, [16, 22, 9, 7, 14, 12, 9, 7])]


def _fast_paths(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    variants = list(data["timing"][0]["variants"]) if data["timing"] else []
    mem = {(r["workload"], r["variant"]): (k, r) for k, r in enumerate(data.get("memory", []))}
    rows = []
    for k, t in enumerate(data["timing"]):
        c = _Cell(name, f"timing.{k}", t)
        row: list[nodes.Node | str] = [_workload(t["workload"]), nodes.inline("", "", c("nodes", ":,"), nodes.Text(
            " / "), c("edges", ":,"))]
        for v in variants:
            cell = (c(f"variants.{v}.ms_per_step", ":.0f", " ms") if v == variants[0]
                    else c.ratio(f"variants.{v}.time_vs_eghn", f"variants.{v}.time_vs_eghn_range"))
            if (t["workload"], v) in mem:
                km, _ = mem[(t["workload"], v)]
                cm = _Cell(name, f"memory.{km}", data["memory"][km])
                cell = nodes.inline("", "", cell, nodes.Text("; "), cm("step_mb", ":.0f", " MB"))
            row.append(cell)
        rows.append(row)
    header = ["workload", "nodes / edges"] + [v if v == variants[0] else f"{v}: time / {variants[0]} (rounds)"
                                              for v in variants]
    return [_table(header, rows, [22, 14] + [16] * len(variants))]


def _malloc(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for k, m in enumerate(data.get("malloc", [])):
        c = _Cell(name, f"malloc.{k}", m)
        rows.append([_workload(m["workload"]), c("threads"), c("pairs"), c("default_ms", ":.0f"), c("reuse_ms", ":.0f"),
                     c.ratio("default_vs_reuse", "range")])
    header = ["workload", "threads", "processes of each kind", "glibc defaults ms", "reuse_freed_memory ms",
              "defaults / reuse (range)"]
    return [_table(header, rows, [24, 6, 8, 10, 10, 14])]


def _scale(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for k, r in enumerate(data["results"]):
        c = _Cell(name, f"results.{k}", r)
        rows.append([_workload(r["config"]), c("nodes", ":,"), c("edges", ":,"), c("threads"),
                     c("ms_per_step", ":.0f"), c("samples_per_s", ":.1f"), c("step_mb", ":.0f"), c("peak_mb", ":.0f")])
    header = ["configuration", "nodes", "edges", "threads", "ms per step", "samples/s", "step MB", "peak RSS MB"]
    return [_table(header, rows, [24, 10, 10, 6, 10, 9, 9, 9])]


def _compile(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for k, r in enumerate(data["runs"]):
        c = _Cell(name, f"runs.{k}", r)
        if "error" in r:
            rows.append([_workload(r["workload"]), r["error"], "", "", "", "", ""])
            continue
        rows.append([_workload(r["workload"]), c("threads"), c("graph_breaks"),
                     c("first_compiled_step_s", ":.0f", " s"), c("eager_ms", ":.0f"), c("compiled_ms", ":.0f"),
                     c("eager_vs_compiled", ":.2f", "x")])
    header = ["workload", "threads", "graph breaks", "first step (compiling)", "eager ms", "compiled ms",
              "eager / compiled"]
    return [_table(header, rows, [24, 6, 8, 12, 9, 9, 10])]


def _compile_breaks(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for k, r in enumerate(data["runs"]):
        c = _Cell(name, f"runs.{k}", r)
        if "error" in r:
            rows.append([nodes.literal(r["variant"], r["variant"]), r["error"], "", "", ""])
            continue
        reasons = r["graph_break_reasons"] + r["recompile_reasons"]
        rows.append([nodes.literal(r["variant"], r["variant"]), r["model"], c("graph_breaks"),
                     nodes.inline("", "", c("graphs_compiled"), nodes.Text(" over "), c("steps"),
                                  nodes.Text(" batches" if r["steps"] > 1 else " batch")),
                     "; ".join(reasons) if reasons else "none"])
    header = ["variant", "model", "graph breaks", "graphs compiled", "reasons (breaks, recompilations)"]
    return [_table(header, rows, [12, 30, 8, 12, 30])]


def _epoch_share(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for k, r in enumerate(data["runs"]):
        c = _Cell(name, f"runs.{k}", r)
        rows.append([nodes.literal(r["config"], r["config"]), c("threads"), c("epochs"),
                     c("step_share_after_first_window", "*100:.1f", " %"),
                     nodes.inline("", "", *[x for j in range(len(r["windows"])) for x in
                                            ((nodes.Text(", ") if j else nodes.Text("")),
                                             c(f"windows.{j}.step_share", "*100:.1f", " %"))])])
    header = ["config", "threads", "epochs", "share in training steps", "per evaluation window"]
    return [_table(header, rows, [22, 6, 6, 12, 30])]


def _models(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    for k, cfg in enumerate(data["results"]):
        para = nodes.paragraph(classes=["eghn-measured"])
        para += nodes.Text(f"{_workload(cfg['config'])}: ")
        c = _Cell(name, f"results.{k}", cfg)
        para += c("nodes", ":,")
        para += nodes.Text(" nodes, ")
        para += c("edges", ":,")
        para += nodes.Text(" global and ")
        para += c("local_edges", ":,")
        para += nodes.Text(" local edges per batch.")
        out.append(para)
        rows = []
        for j, m in enumerate(cfg["models"]):
            cm = _Cell(name, f"results.{k}.models.{j}", m)
            rows.append([m["model"], cm("params", ":,"),
                         cm("ms", ":.0f") if m["ms"] is not None else "refused",
                         cm("note") if m["note"] else ""])
        out.append(_table(["model", "parameters", "ms per forward + backward", "note"], rows, [16, 10, 10, 40]))
    return out


def _simulator(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for k, r in enumerate(data["results"]):
        c = _Cell(name, f"results.{k}", r)
        rows.append([r["config"], c("trajectories"), c("per_cpu_s", ":.0f"), c("per_s", ":.0f"),
                     c("full_dataset_min", ":.1f", " min"),
                     c("speedup", ":.0f", "x") if r.get("speedup") is not None else ""])
    header = ["configuration", "trajectories", "per CPU-second", "per second (wall)", "full 5000/2000/2000 dataset",
              "vs the published generator"]
    return [_table(header, rows, [12, 10, 10, 10, 12, 12])]


def _profile(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for m, rec in data["models"].items():
        for j, op in enumerate(rec["top"]):
            c = _Cell(name, f"models.{m}.top.{j}", op)
            first = j == 0
            rows.append([_MODELS[m] if first else "",
                         _Cell(name, f"models.{m}", rec)("self_cpu_ms_per_step", ":.0f") if first else "",
                         nodes.literal(op["name"], op["name"]), c("self_ms", ":.1f"), c("share", "*100:.0f", " %"),
                         c("calls")])
    header = ["model", "operator ms per step", "operator", "self ms per step", "share", "calls per step"]
    return [_table(header, rows, [18, 10, 26, 10, 8, 8])]


#: the parts of benchmarks/gpu_suite.py and what each measures
GPU_PARTS = {
    "pytest_gpu": "the GPU-marked tests (tox -e gpu's pytest)",
    "side_by_side": "step time beside the authors' code: mocap, M-complex (10,10), AdK",
    "scale": "forward + backward at 10^4, 10^5 and 10^6 nodes: time and peak memory",
    "time_to_accuracy": "motion capture, Run: time and epoch to the paper's validation number (3-minute cut)",
    "gallery_mcomplex": "the full M-complex training tutorial (EGHN_GALLERY=full)",
}
NOT_MEASURED = "not yet measured on a GPU"


def _gpu_result(part: str, data: dict[str, Any]) -> nodes.Node:
    """A short account of one measured part, every number a rendered result."""
    name = f"gpu/{part}"
    c = _Cell(name, "", data)
    out = nodes.inline()

    def add(*items: nodes.Node | str) -> None:
        for item in items:
            out.append(nodes.Text(item) if isinstance(item, str) else item)

    if data.get("status") != "ok":
        out += nodes.Text(f"{data.get('status')}: {data.get('error') or data.get('reason') or ''}")
        if part == "gallery_mcomplex" and data.get("fits"):
            # how far the tutorial got: the trainings it finished, each with its time
            add(" (after ", c("wall_s", ":.0f", " s"), "; trainings finished: ")
            for k in range(len(data["fits"])):
                add("; " if k else "", c(f"fits.{k}.steps", ":,"), " steps in ", c(f"fits.{k}.wall_s", ":.0f", " s"))
            add(")")
        return out

    if part == "pytest_gpu":
        add(c("tests.passed"), " passed, ", c("tests.failed"), " failed, ", c("tests.skipped"), " skipped")
    elif part == "scale":
        for k, r in enumerate(data["runs"]):
            add("; " if k else "", c(f"runs.{k}.nodes", ":,"), " nodes: ")
            if r.get("status") == "ok":
                add(c(f"runs.{k}.ms_forward_backward", ":.0f", " ms"))
                if "peak_mb" in r:
                    add(", ", c(f"runs.{k}.peak_mb", ":.0f", " MB peak"))
            else:
                add(str(r.get("status")))
    elif part == "side_by_side":
        for k, t in enumerate(data["timing"]):
            add("; " if k else "", _workload(t["workload"]), ": ")
            if t.get("status") == "ok":
                add("authors / released ", c(f"timing.{k}.models.released.ratio", ":.2f", "x"),
                    ", authors / default ", c(f"timing.{k}.models.default.ratio", ":.2f", "x"))
            else:
                add(str(t.get("status")))
    elif part == "time_to_accuracy":
        for k, (which, r) in enumerate(data["runs"].items()):
            add("; " if k else "", f"{which}: ")
            if r.get("status") != "ok":
                add(str(r.get("status")))
            elif r["reached"]:
                add("epoch ", c(f"runs.{which}.epoch_reached"), ", ", c(f"runs.{which}.wall_s_reached", ":.0f", " s"))
            elif r["wall_s"] < r["cut_s"]:  # the run ended on its own (early stopping) before the cut
                add("not reached; ended at epoch ", c(f"runs.{which}.epochs_run", ":,"), " after ",
                    c(f"runs.{which}.wall_s", ":.0f", " s"), ", before the cut (best ",
                    c(f"runs.{which}.best_val", ":.3g"), ")")
            else:
                add("not reached in ", c(f"runs.{which}.cut_s", ":.0f", " s"), " (",
                    c(f"runs.{which}.epochs_run", ":,"), " epochs; best ", c(f"runs.{which}.best_val", ":.3g"), ")")
    elif part == "gallery_mcomplex":
        add("finished in ", c("wall_s", ":.0f", " s"))
    return out


def gpu_suite_rows(results: Any) -> list[tuple[str, str, dict[str, Any] | None]]:
    """``(part, description, data or None)`` per part; ``None`` where nothing was measured on a
    GPU: no file in ``results`` (a folder), or the file of a ``--smoke`` run."""
    import json
    from pathlib import Path

    rows = []
    for part, what in GPU_PARTS.items():
        path = Path(results) / f"{part}.json"
        data = json.loads(path.read_text()) if path.is_file() else None
        if data is not None and (data.get("smoke", True) or str(data.get("device", "cpu")) == "cpu"):
            data = None
        rows.append((part, what, data))
    return rows


def _gpu_suite(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    from eghn_results import _DOCS

    rows = []
    for part, what, rec in gpu_suite_rows(_DOCS.parent / "benchmarks" / "results" / "gpu"):
        if rec is None:
            rows.append([nodes.literal(part, part), what, NOT_MEASURED, ""])
            continue
        c = _Cell(f"gpu/{part}", "", rec)
        where = nodes.inline("", "", c("device"), nodes.Text(", PyTorch "), c("torch"), nodes.Text(", commit "),
                             c("commit"), nodes.Text(", "), c("date"))
        rows.append([nodes.literal(part, part), what, _gpu_result(part, rec), where])
    return [_table(["part", "what", "result", "measured on"], rows, [14, 30, 36, 20])]


_TTA_RUNS = {"eghn_recipe": "eghn, eghn's recipe", "eghn_released": "eghn, released architecture, released protocol",
             "authors": "authors' code, unmodified"}


def _time_to_accuracy(name: str, data: dict[str, Any]) -> list[nodes.Node]:
    rows = []
    for run, label in _TTA_RUNS.items():
        if run not in data["runs"]:
            continue
        r = data["runs"][run]
        c = _Cell(name, f"runs.{run}", r)
        state = nodes.inline("", "", c("epochs", ":,"), nodes.Text(" epochs, "),
                             nodes.Text(r.get("stop_reason", "") if r["finished"] else "cut short (unfinished)"))
        cells: list[Any] = [label, state, c("s_per_epoch", ":.2f", " s"),
                            nodes.inline("", "", c("test_at_best_val", "*100:.1f", "e-2"), nodes.Text(" (epoch "),
                                         c("best_epoch", ":,"), nodes.Text(")"))]
        for key in ("authors_best_val", "paper_test"):
            hit = r["reached"][key]
            cells.append(nodes.inline("", "", c(f"reached.{key}.wall_s", ":,.0f", " s"), nodes.Text(", epoch "),
                                      c(f"reached.{key}.epoch", ":,")) if hit else "not reached")
        ratio = data["authors_time_over_eghn_time"].get(run, {})
        cells.append(nodes.inline("", "", *[x for j, key in enumerate(("authors_best_val", "paper_test")) for x in (
            nodes.Text(" / " if j else ""),
            result_node(render(ratio[key], ":.2f") + "x", f"bench/{name}:authors_time_over_eghn_time.{run}.{key}")
            if ratio.get(key) is not None else nodes.Text("--"))]) if run != "authors" else "")
        rows.append(cells)
    header = ["run", "length", "s per epoch", "test at best val (epoch)", "to the authors' best val",
              "to the paper's test", "authors' time / this run's"]
    return [_table(header, rows, [20, 14, 8, 14, 14, 14, 12])]


_KINDS = {"provenance": _provenance, "side-by-side": _side_by_side, "flops": _flops, "memory": _memory,
          "fast-paths": _fast_paths, "malloc": _malloc, "scale": _scale, "compile": _compile,
          "compile-breaks": _compile_breaks,
          "epoch-share": _epoch_share, "models": _models, "simulator": _simulator,
          "profile": _profile, "gpu-suite": _gpu_suite, "time-to-accuracy": _time_to_accuracy,
          "memory-breakdown": _memory_breakdown,
          "side-by-side-compiled": _side_by_side_compiled}


class BenchDirective(SphinxDirective):
    """``.. eghn-bench:: KIND`` with ``:source: NAME``."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"source": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        kind, name = self.arguments[0], self.options.get("source", "")
        if kind not in _KINDS:
            logger.warning("unknown benchmark table %r; choose from %s", kind, ", ".join(_KINDS),
                           location=self.get_location())
            return []
        try:
            data = load_source(f"bench/{name}") if kind != "gpu-suite" else {}
            return _KINDS[kind](name, data)
        except Exception as exc:
            logger.warning("cannot render %s from benchmarks/results/%s.json: %s", kind, name, exc,
                           location=self.get_location())
            return []


def setup(app):
    app.add_directive("eghn-bench", BenchDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
