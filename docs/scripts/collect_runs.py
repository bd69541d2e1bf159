"""Collect training runs into a result file of the documentation (``docs/results/NAME.json``).

For every run directory given, copies its ``config.json``, ``metrics.csv`` and (when the run
finished) ``result.json`` into ``docs/results/run_files/<key>/`` and summarises it: best
validation epoch, test MSE there, epochs trained, wall time, the number of parameters (from
``train.log``), whether it finished (or diverged), the counts of the trainer's stability
detectors (``stability``: spikes of more than 3x over the running best, pooling collapses,
and under ``events`` the epoch and series of each; runs trained since they exist), the first
epoch (and wall time) at which the validation MSE reached each ``--threshold``, the loss
jumps (``spikes``: evaluations whose validation MSE more than doubled from the previous one) and the
regulariser (training loss minus training MSE; for EGHN the connectivity loss times
lambda) at the end and at its first jump by more than 0.5. A run still in
progress is summarised as far as its ``metrics.csv`` goes and marked so.

Usage::

    python docs/scripts/collect_runs.py NAME RUN_DIR[=LABEL,DATA,MODEL,COMMAND] ... \
        [--threshold 1.40] [--threshold-from NAME=FILE:PATH] [--references] [--about TEXT] [--add]

An ``eghn train`` COMMAND must describe its run: its config name, seed, ``--quick``, every ``--set``
and the thread count it fixes are checked against the run's ``config.json`` and machine records
(:func:`command_disagreements`), and a run whose command disagrees is refused. A run trained with
one thread through the environment (``train.threads`` left at 0) is recorded as
``OMP_NUM_THREADS=1 eghn train ...``, not with a ``--set train.threads=1`` it never had.

``--add`` keeps the runs that ``NAME.json`` already holds (collected earlier, from run
directories that may be gone) and adds or replaces the runs given.

``--references`` adds, for each run, the reference MSEs ``eghn train`` prints beside its result
(:func:`eghn.train.references.reference_mses` on the run's own config and data: hold still and
linear extrapolation on the test split), so that the page compares with computed numbers, and
under ``split_references`` the same two on the training and validation splits (how much the data
move there: the validation ones compare with ``best_val``).

``--rotated SEED`` adds, for each finished run, the test MSE of its best checkpoint with every
test graph under its own random rotation (Table 3's "test-time rotation" column), exactly as
``eghn evaluate RUN --rotate --seed SEED --json`` measures it: ``rotated`` holds that MSE, the
one without rotation from the same call (it equals ``test_mse`` up to rounding) and the command.

The result file records what it was made with (:func:`provenance`): the eghn version and
commit of the checkout that collected it, and each run the version that trained it (from its
``result.json``), so that a number on the site names a citable version (CHANGELOG.md, Releases).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]


def reg(row: dict) -> float:
    """The regulariser of an evaluation row: training loss minus training MSE."""
    return float(row["train_loss"]) - float(row["train_mse"])


def check_run(run: Path, rows: list[dict]) -> None:
    """Refuse a run directory whose files disagree: ``metrics.csv`` must hold the evaluations of
    ``result.json`` (a finished run) or of ``last.pt``, epoch for epoch and value for value."""
    truth = None
    if (run / "result.json").is_file():
        truth, source = json.loads((run / "result.json").read_text()).get("history"), "result.json"
    elif (run / "last.pt").is_file():
        from eghn.train.checkpoint import load_checkpoint

        truth, source = load_checkpoint(run / "last.pt").get("history"), "last.pt"
    if truth is None:
        return
    ours = [(int(r["epoch"]), float(r["val_mse"]), float(r["test_mse"])) for r in rows]
    theirs = [(int(h["epoch"]), float(h["val_mse"]), float(h["test_mse"])) for h in truth]
    if ours != theirs[:len(ours)] or len(theirs) - len(ours) not in (0, 1):
        raise SystemExit(f"{run}: metrics.csv does not hold the evaluations of {source}; resume the run "
                         "(eghn train --resume) to rewrite it, or collect another run")


def command_disagreements(command: str, config: dict, machines: list[dict] | None = None) -> list[str]:
    """Where an ``eghn train`` command, as a result file records it, disagrees with the run it names.

    ``command`` may begin with environment assignments (``OMP_NUM_THREADS=1 eghn train ...``) and
    may chain a resumption (``eghn train CONFIG ... , then eghn train --resume RUN_DIR --set ...``):
    the last setting of a key wins, as it did in the run. Checked against the run's resolved
    ``config.json``: the config's name, ``--seed``, ``--quick`` and every ``--set key=value``
    (``data.length_scale=auto`` stands for any number, the one it resolved to; a key the config
    does not hold is a setting newer than the run, which the command pins to the run's behaviour,
    and passes). Against the machine records of ``result.json``: the torch thread count, where the
    command fixes it (``--set train.threads=N``, or ``OMP_NUM_THREADS=N`` with ``train.threads``
    left at 0). Commands of other programs are not checked (an empty list)."""
    import contextlib
    import io
    import shlex

    from eghn.cli import build_parser
    from eghn.train.config import _get, parse_value

    settings: dict[str, object] = {}
    env: dict[str, str] = {}
    config_name = seed = None
    quick = False
    for part in command.split(", then "):
        tokens = shlex.split(part)
        while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):
            name, _, value = tokens.pop(0).partition("=")
            env[name] = value
        if tokens[:2] != ["eghn", "train"]:
            return []
        try:  # the CLI's own parser: a flag it would refuse is a disagreement too
            with contextlib.redirect_stderr(io.StringIO()):
                args = build_parser().parse_args(tokens[1:])
        except SystemExit:
            return [f"eghn train does not accept {part!r}"]
        config_name = args.config or config_name
        seed = args.seed if args.seed is not None else seed
        quick = quick or args.quick
        for item in args.overrides:
            key, _, text = item.partition("=")
            settings[key] = parse_value(text)
    found = []
    if config_name is not None and config.get("name") != config_name.replace("/", "_"):
        found.append(f"the command trains {config_name}, the run's config is named {config.get('name')!r}")
    if seed is not None and config.get("seed") != seed:
        found.append(f"--seed {seed}, the run's seed is {config.get('seed')}")
    if quick and not config.get("quick"):
        found.append("--quick, the run's config was not reduced")
    for key, value in settings.items():
        held = _get(config, key.split("."))
        if held is None or held == value:
            continue
        if key == "data.length_scale" and value == "auto" and isinstance(held, (int, float)):
            continue
        found.append(f"--set {key}={value}, the run's config holds {held!r}")
    threads = settings.get("train.threads", _get(config, ["train", "threads"]))
    if not threads and env.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(env["OMP_NUM_THREADS"])
    for record in (machines or []) if threads else []:
        if record.get("threads") not in (None, threads):
            found.append(f"{threads} torch thread(s), the run trained with {record['threads']} "
                         f"after epoch {record.get('after_epoch', 0)}")
    return found


def _load_checkpoint(path: Path) -> dict:
    from eghn.train.checkpoint import load_checkpoint

    return load_checkpoint(path)


def summarise(run: Path, thresholds: list[float], named: dict[str, float] | None = None) -> dict:
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    if not rows:
        raise SystemExit(f"{run} has no evaluations yet")
    check_run(run, rows)
    config = json.loads((run / "config.json").read_text())
    best = min(rows, key=lambda r: float(r["val_mse"]))
    finished = (run / "result.json").is_file()
    out = {
        "config_name": config["name"],
        "protocol": config.get("protocol", ""),
        "seed": config["seed"],
        "length_scale": config["data"].get("length_scale"),
        "epochs": int(rows[-1]["epoch"]),
        "best_epoch": int(best["epoch"]),
        "best_val": float(best["val_mse"]),
        "test_mse": float(best["test_mse"]),
        "wall_s": float(rows[-1]["wall_s"]),
        "train_mse_at_best": float(best["train_mse"]),
        "last_train_loss": float(rows[-1]["train_loss"]),
        "last_train_mse": float(rows[-1]["train_mse"]),
        "finished": finished,
        "curve": [[int(r["epoch"]), round(float(r["val_mse"]), 5)] for r in rows],
        "reached": {},
        # the regulariser (training loss minus training MSE: the connectivity loss times lambda
        # for EGHN) at the last evaluation, and its first jump by more than 0.5
        "last_regulariser": reg(rows[-1]),
        "regulariser_jump": next(({"epoch": int(b["epoch"]), "before": reg(a), "after": reg(b)}
                                  for a, b in pairwise(rows) if reg(b) > reg(a) + 0.5), None),
        # loss spikes: evaluations whose validation MSE is more than twice the previous one
        "spikes": [{"epoch": int(b["epoch"]), "before": float(a["val_mse"]), "after": float(b["val_mse"])}
                   for a, b in pairwise(rows) if float(b["val_mse"]) > 2 * float(a["val_mse"])],
    }
    log = run / "train.log"
    if log.is_file():  # "run DIR: model NAME (252,753 parameters), ..."
        text = log.read_text()
        m = re.search(r"\(([\d,]+) parameters\)", text)
        if m:
            out["parameters"] = int(m.group(1).replace(",", ""))
        m = re.search(r"training diverged: (.*?) at epoch (\d+)", text)
        if m and not finished:  # the trainer stopped on a non-finite loss
            out["diverged"] = {"epoch": int(m.group(2)), "why": m.group(1)}
    if finished:
        res = json.loads((run / "result.json").read_text())
        out.update(best_epoch=res["best_epoch"], best_val=res["best_val"], test_mse=res["test"],
                   stopped_early=res["stopped_early"])
        if "stability" in res:  # the trainer's own detectors (eghn.train.stability): counts and events
            # each event without its message (a sentence made of the same numbers): what a page cites
            # when it says where a counted spike or collapse was, which the weaker ``spikes`` test
            # below may not list
            st = res["stability"]
            out["stability"] = st | {"events": [{k: v for k, v in ev.items() if k != "message"}
                                                for ev in st.get("events", [])]}
        if res.get("machines"):  # where it trained (eghn.train.machine): a seed repeats bit for bit only there
            out["machines"] = res["machines"]
    init = (res.get("init") if finished else
            _load_checkpoint(run / "last.pt").get("init") if (run / "last.pt").is_file() else None)
    if init:  # train.init_tries (eghn.train.init_selection): the probed starts and the chosen seed
        out["init"] = init
    keyed = {f"{t:g}".replace(".", "_"): t for t in thresholds} | dict(named or {})
    for key, t in keyed.items():
        hit = next((r for r in rows if float(r["val_mse"]) <= t), None)
        out["reached"][key] = None if hit is None else {"epoch": int(hit["epoch"]), "wall_s": float(hit["wall_s"])}
    return out


def rotated_test(run: Path, seed: int) -> dict:
    """The test MSE of ``run``'s best checkpoint under a random rotation of every test graph
    (:func:`eghn.train.trained.evaluate_run`, what ``eghn evaluate RUN --rotate --seed SEED`` prints)."""
    from eghn.train.trained import evaluate_run

    res = evaluate_run(run, rotate=True, seed=seed)
    return {"test_mse": res["mse_transformed"], "test_mse_plain": res["mse"], "epoch": res["epoch"],
            "dtype": res["dtype"], "command": f"eghn evaluate RUN --rotate --seed {seed} --json"}


def provenance(root: Path = DOCS.parent) -> dict[str, str]:
    """The eghn version and the git commit of the source tree at ``root`` (``"unknown"`` outside git)."""
    version = re.search(r'__version__ = "([^"]+)"', (root / "eghn" / "__init__.py").read_text())
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"eghn_version": version.group(1) if version else "unknown", "commit": commit or "unknown"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name")
    ap.add_argument("runs", nargs="+", help="RUN_DIR=KEY,DATA,MODEL,COMMAND (separated by ';' instead when DATA "
                                            "holds a comma, e.g. 'single (3,3)')")
    ap.add_argument("--threshold", type=float, action="append", default=[])
    ap.add_argument("--threshold-from", action="append", default=[], metavar="NAME=FILE:PATH",
                    help="a threshold read from a result file (e.g. authors_best=docs/results/authors_runs.json:"
                         "runs.authors_run_s1.best_val), recorded under reached.NAME and, with its source, "
                         "under thresholds.NAME")
    ap.add_argument("--references", action="store_true",
                    help="add each run's reference MSEs (needs the run's data)")
    ap.add_argument("--rotated", type=int, metavar="SEED",
                    help="add each finished run's test MSE under a random rotation of every test graph "
                         "(eghn evaluate RUN --rotate --seed SEED)")
    ap.add_argument("--about", default="")
    ap.add_argument("--add", action="store_true",
                    help="keep the runs the result file already holds (their run directories may be gone; "
                         "their run files stay) and add or replace the runs given; --about replaces the "
                         "file's text only when given")
    args = ap.parse_args()
    out = DOCS / "results" / f"{args.name}.json"
    result = {"about": args.about, **provenance(), "runs": {}}
    if args.add and out.is_file():
        old = json.loads(out.read_text())
        result["runs"] = old.get("runs", {})
        result["about"] = args.about or old.get("about", "")
        if "thresholds" in old:
            result["thresholds"] = old["thresholds"]
    named = {}
    for spec in args.threshold_from:
        name, _, source = spec.partition("=")
        file, _, path = source.partition(":")
        value = json.loads(Path(file).read_text())
        for part in path.split("."):
            value = value[int(part)] if isinstance(value, list) else value[part]
        named[name] = float(value)
        result.setdefault("thresholds", {})[name] = {"value": float(value), "source": f"{Path(file).name}:{path}"}
    for spec in args.runs:
        path, _, meta = spec.partition("=")
        key, data, model, command = meta.split(";" if ";" in meta else ",", 3)
        run = Path(path)
        summary = summarise(run, args.threshold, named)
        config = json.loads((run / "config.json").read_text())
        wrong = command_disagreements(command, config, summary.get("machines"))
        if wrong:
            raise SystemExit(f"{run}: the command given for {key} does not describe this run: " + "; ".join(wrong))
        summary.update(data=data, model=model, command=command)
        if (run / "result.json").is_file():  # the version that trained the run
            summary["eghn_version"] = json.loads((run / "result.json").read_text()).get("version", "unknown")
        if args.references:
            from eghn.train.references import reference_mses

            summary["references"] = {r.key: {"label": r.label, "mse": r.mse, "t": r.t}
                                     for r in reference_mses(config)}
            summary["split_references"] = {split: {r.key: r.mse for r in reference_mses(config, split)}
                                           for split in ("train", "val")}
        if args.rotated is not None and (run / "result.json").is_file():
            summary["rotated"] = rotated_test(run, args.rotated)
        result["runs"][key] = summary
        dest = DOCS / "results" / "run_files" / key
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "metrics.csv", "result.json"):
            if (run / f).is_file():
                shutil.copy2(run / f, dest / f)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
