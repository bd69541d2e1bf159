"""What a cell of the paper's tables would cost to run: measured CPU time per epoch times the
epoch cap, per seed and for three seeds.

For every cell of the chosen tables (:data:`eghn.train.reproduce.TABLES`) that has no collected
run (no run of its config in ``docs/results/``, :data:`eghn.train.collected.STATUS_SOURCES`;
``--all``: every cell), and
every protocol asked for, this trains the cell's config as ``eghn reproduce`` would (one torch
thread) for ``--epochs`` epochs with one evaluation at the end, and times each epoch in CPU
seconds of this process (``time.process_time``: a busy machine slows the wall clock, much less
the CPU time). It records:

* ``cpu_s_per_epoch``: the median training epoch after the first (which warms up the allocator);
  with ``--epochs 2`` (for the slowest models), the first epoch, warm-up included;
* ``cpu_s_per_eval``: the last epoch (which evaluates val and test) minus that median;
* ``cpu_s_setup``: data and model construction, up to the first epoch;
* ``probe_epochs``: the most epochs a run spends probing starts before it trains
  (:func:`eghn.train.init_selection.max_probe_epochs`; the timing itself trains one start,
  without the probe);
* ``cpu_hours_per_seed``: setup + (``probe_epochs`` + ``epochs``) x training epoch +
  ``epochs / eval_every`` x evaluation at the config's epoch cap, in hours. Early stopping
  usually ends a run sooner and a probe often passes at its first start, so this is an upper
  bound for one seed; ``cpu_hours_3_seeds`` is three times it;
* ``cpu_hours_3_seeds_typical``: three seeds at ``typical_epochs``, the median number of epochs
  that the finished collected runs on the same data trained (``typical_from_runs`` of them),
  each with the whole ``probe_epochs``;
* ``load_avg``: the machine's 1-minute load average before and after the timing. CPU seconds
  grow when other processes share the cores (two hardware threads of one core run slower
  than one), so entries measured under different loads compare only roughly;
* the command that runs the cell (``eghn reproduce TABLE --protocol P --only CONFIG``), and the one
  that measures the entry again (``measured_with``).

Results go to a JSON file (default ``docs/results/cell_costs.json``), rendered on the Results
page beside the cells that have not run. Entries already in the file are kept (``--redo``
measures them again)::

    OMP_NUM_THREADS=1 python benchmarks/cell_cost.py [--tables table1 table3] [--protocols released paper]
        [--epochs 3] [--only CONFIG ...] [--all] [--out FILE]

Needs ``EGHN_DATA_DIR`` for motion capture.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eghn.train import train  # noqa: E402
from eghn.train.callbacks import Callback  # noqa: E402
from eghn.train.collected import read_result_files, trained_configs  # noqa: E402
from eghn.train.config import ConfigError, load_config  # noqa: E402
from eghn.train.init_selection import max_probe_epochs  # noqa: E402
from eghn.train.machine import cpu_name  # noqa: E402
from eghn.train.reproduce import TABLES  # noqa: E402

__all__ = ["EpochClock", "cpu_hours", "main", "measure", "measured_with", "not_run_cells", "typical_epochs"]


class EpochClock(Callback):
    """Records the process CPU time and the wall time at the start and at the end of every epoch."""

    def __init__(self) -> None:
        self.start: tuple[float, float] | None = None
        self.ends: list[tuple[float, float]] = []

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.process_time(), time.perf_counter()

    def on_fit_start(self, trainer) -> None:
        self.start = self._now()

    def on_epoch_end(self, trainer, epoch: int) -> None:
        self.ends.append(self._now())


def not_run_cells(tables: list[str], *, include_run: bool = False,
                  sources: dict[str, dict[str, Any]] | None = None) -> list[tuple[str, Any]]:
    """``(table, cell)`` for the cells of ``tables`` whose config no collected run trained (the
    config named after ``eghn train`` in a run's command, in ``sources``: by default the result
    files of :data:`~eghn.train.collected.STATUS_SOURCES`); every cell with ``include_run``."""
    trained = trained_configs(read_result_files(missing_ok=True) if sources is None else sources)
    return [(table, cell) for table in tables for cell in TABLES[table].cells
            if include_run or cell.config not in trained]


def typical_epochs(column: str, sources: dict[str, dict[str, Any]] | None = None) -> list[int]:
    """The epochs that the finished collected runs on the data of ``column`` trained (to early
    stopping or their cap), sorted; ``sources`` as in :func:`not_run_cells`."""
    sources = read_result_files(missing_ok=True) if sources is None else sources
    return sorted(int(r["epochs"]) for content in sources.values() for r in content.get("runs", {}).values()
                  if r.get("data") == column and r.get("finished", True) and not r.get("diverged")
                  and "epochs" in r)


def measure(config_name: str, protocol: str | None, epochs: int, *, overrides: list[str] = (),
            quick: bool = False) -> dict[str, Any]:
    """Train ``config_name`` under ``protocol`` (``None``: the config's own), with the ``--set``
    ``overrides``, for ``epochs`` epochs (one evaluation, at the end) and return its timing
    record (``quick``: the config's ``[quick]`` table, for tests)."""
    load_before = os.getloadavg()[0]
    t0 = (time.process_time(), time.perf_counter())
    config = load_config(config_name, [*overrides, "train.threads=1"], quick=quick, protocol=protocol)
    cap, eval_every = int(config["train"]["epochs"]), int(config["train"]["eval_every"])
    probe = max_probe_epochs(config["train"])
    config["train"].update(epochs=epochs, eval_every=epochs, progress=False, init_tries=1)
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, Path(tmp) / "run", echo=lambda msg: None, callbacks=[clock])
    cpu = [clock.start[0], *(e[0] for e in clock.ends)]
    wall = [clock.start[1], *(e[1] for e in clock.ends)]
    cpu_epochs = [b - a for a, b in itertools.pairwise(cpu)]
    wall_epochs = [b - a for a, b in itertools.pairwise(wall)]
    train_epochs = cpu_epochs[1:-1] or cpu_epochs[:-1] or cpu_epochs
    per_epoch = statistics.median(train_epochs)
    per_eval = max(cpu_epochs[-1] - per_epoch, 0.0)
    setup = clock.start[0] - t0[0]
    timing = {
        "epoch_cap": cap,
        "probe_epochs": probe,
        "eval_every": eval_every,
        "measured_epochs": epochs,
        "cpu_s_setup": round(setup, 2),
        "cpu_s_per_epoch": round(per_epoch, 3),
        "cpu_s_per_eval": round(per_eval, 3),
        "cpu_s_epochs": [round(c, 3) for c in cpu_epochs],
        "wall_s_epochs": [round(w, 3) for w in wall_epochs],
        "epochs_trained": result.epochs,
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    timing["cpu_hours_per_seed"] = cpu_hours(timing, cap)
    timing["cpu_hours_3_seeds"] = round(3 * timing["cpu_hours_per_seed"], 3)
    return timing


def measured_with(table: str, entry: dict[str, Any]) -> str:
    r"""The command that measures ``entry`` (a cell of ``table``) again, from its own fields.

    >>> entry = {"config": "protein/adk_mpnn", "protocol": "paper", "measured_epochs": 2,
    ...          "overrides": ["data.source=adk-embedded"]}
    >>> print(measured_with("table3", entry).replace(" --", "\n--"))
    OMP_NUM_THREADS=1 python benchmarks/cell_cost.py
    --tables table3
    --protocols paper
    --epochs 2
    --only protein/adk_mpnn
    --set data.source=adk-embedded
    --all
    --redo
    """
    sets = "".join(f" --set {shlex.quote(o)}" for o in entry.get("overrides", []))
    return (f"OMP_NUM_THREADS=1 python benchmarks/cell_cost.py --tables {table} --protocols {entry['protocol']} "
            f"--epochs {entry['measured_epochs']} --only {entry['config']}{sets} --all --redo")


def cpu_hours(timing: dict[str, Any], epochs: int) -> float:
    """CPU hours of one seed trained for ``epochs`` epochs after its probe (``probe_epochs``,
    0 when absent), from a :func:`measure` record.

    >>> cpu_hours({"cpu_s_setup": 0.0, "cpu_s_per_epoch": 1.0, "cpu_s_per_eval": 2.0, "eval_every": 5}, 3600)
    1.4
    >>> cpu_hours({"cpu_s_setup": 0.0, "cpu_s_per_epoch": 1.0, "cpu_s_per_eval": 2.0, "eval_every": 5,
    ...            "probe_epochs": 360}, 3600)
    1.5
    """
    total = timing["cpu_s_setup"] + (timing.get("probe_epochs", 0) + epochs) * timing["cpu_s_per_epoch"]
    return round((total + epochs // timing["eval_every"] * timing["cpu_s_per_eval"]) / 3600, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--protocols", nargs="+", default=["released"], choices=["released", "paper", "eghn"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs to time per cell (at least 2)")
    parser.add_argument("--only", nargs="+", default=[], help="only these configs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting changed in every measured config (recorded in the entry's key and "
                             "command), e.g. --set data.source=adk-embedded for the offline AdK frames")
    parser.add_argument("--all", action="store_true", help="also the cells that have runs")
    parser.add_argument("--redo", action="store_true", help="measure again what the file holds")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "cell_costs.json")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (one warm-up epoch, one timed)")
    torch.set_num_threads(1)
    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    record.update({
        "about": "CPU time of the cells of the paper's tables that have no run: measured per epoch "
                 "(one torch thread), times the config's epoch cap (an upper bound: early stopping "
                 "usually ends sooner)",
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version()},
    })
    record.pop("command", None)  # each entry names the command that measured it (measured_with)
    cells = record.setdefault("cells", {})
    sources = read_result_files(missing_ok=True)  # the collected runs, read once
    for table, cell in not_run_cells(args.tables, include_run=args.all, sources=sources):
        if args.only and cell.config not in args.only:
            continue
        for protocol in args.protocols:
            key = "|".join([cell.config, protocol, *args.overrides])
            entry = cells.get(key)
            if entry is not None and not args.redo:
                if [table, cell.row, cell.column] not in entry["cells"]:
                    entry["cells"].append([table, cell.row, cell.column])
                continue
            try:
                timing = measure(cell.config, protocol, args.epochs, overrides=args.overrides)
            except ConfigError as exc:  # e.g. the recipe, defined for EGHN configs only
                print(f"{key}: skipped ({exc})", flush=True)
                continue
            except Exception as exc:  # e.g. data that needs a download on an offline machine
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                cells[key] = {"config": cell.config, "protocol": protocol, "cells": [[table, cell.row, cell.column]],
                              "overrides": args.overrides, "error": error}
                print(f"{key}: not measured ({cells[key]['error']})", flush=True)
                continue
            sets = "".join(f" --set {shlex.quote(o)}" for o in args.overrides)
            command = f"eghn reproduce {table} --protocol {protocol} --only {cell.config} --seeds 3{sets}"
            cells[key] = {"config": cell.config, "protocol": protocol, "cells": [[table, cell.row, cell.column]],
                          "overrides": args.overrides,
                          "command": command,
                          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **timing}
            cells[key]["measured_with"] = measured_with(table, cells[key])
            seen = typical_epochs(cell.column, sources)
            if seen:  # at the median epochs of the finished runs on the same data
                median = int(statistics.median(seen))
                cells[key].update(typical_epochs=median, typical_from_runs=len(seen),
                                  cpu_hours_3_seeds_typical=round(3 * cpu_hours(timing, median), 3))
            print(f"{key}: {timing['cpu_s_per_epoch']} CPU s/epoch, cap {timing['epoch_cap']}: "
                  f"{timing['cpu_hours_per_seed']} CPU h per seed", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(record, indent=1) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
