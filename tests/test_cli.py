"""The ``eghn`` command line: train / evaluate / resume / data / errors (toy data, in-process)."""

from __future__ import annotations

import json

import pytest
from _train_toy import ToyDataset  # noqa: F401  (registers the "_toy" dataset and model)

from eghn.cli import build_parser, main

TOY = """
name = "toy"
seed = 2
device = "cpu"
out_dir = "{out}"
[data]
name = "_toy"
size = 24
[model]
name = "_toy"
[train]
epochs = 4
batch_size = 8
eval_every = 2
lr = 0.01
dtype = "float64"
threads = 1
[quick]
train = {{ epochs = 2 }}
"""


@pytest.fixture
def toy_toml(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY.format(out=tmp_path / "runs"))
    return path


def test_train_evaluate_resume(toy_toml, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(toy_toml), "--set", "train.epochs=4", "--run-dir", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test MSE (at best val epoch" in out and "equivariance error" in out and "val MSE" in out
    assert "samples/s" in out and "best epoch" in out
    result = json.loads((run / "result.json").read_text())

    assert main(["evaluate", str(run), "--rotate", "--translate", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["mse"] == pytest.approx(result["test"], rel=1e-12)
    assert ev["mse_transformed"] == pytest.approx(ev["mse"], rel=1e-9)
    assert main(["evaluate", str(run / "last.pt"), "--split", "val"]) == 0
    assert "val split" in capsys.readouterr().out

    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # finished: nothing to do
    assert "nothing to resume" in capsys.readouterr().out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a machine without CUDA")
def test_a_run_trained_on_cuda_evaluates_on_a_cpu_machine(toy_toml, tmp_path, capsys):
    """A run whose config says ``device = "cuda"`` (trained on a GPU) is evaluated on the CPU of a
    machine without one, with the same MSE; asking for CUDA there explicitly is a clear error."""
    run = tmp_path / "run"
    assert main(["train", str(toy_toml), "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    on_cpu = json.loads(capsys.readouterr().out)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(config, device="cuda")))
    assert main(["evaluate", str(run), "--rotate", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["mse"] == pytest.approx(on_cpu["mse"], rel=1e-12)
    assert main(["evaluate", str(run), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_quick_show_and_list(toy_toml, capsys):
    assert main(["train", str(toy_toml), "--quick", "--show", "--device", "cpu", "--seed", "9"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["train"]["epochs"] == 2 and cfg["quick"] is True and cfg["seed"] == 9
    assert main(["train", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert "default" in names and "mocap/walk_eghn" in names


def test_clear_errors(toy_toml, tmp_path, capsys):
    assert main(["train", str(toy_toml), "--set", "train.epoch=3"]) == 2
    assert "did you mean train.epochs" in capsys.readouterr().err
    assert main(["train", str(toy_toml), "--set", "model.hiden=3", "--run-dir", str(tmp_path / "x")]) == 2
    assert "model.hidden" in capsys.readouterr().err
    assert main(["train", "no/such/config"]) == 2
    assert "neither a file nor a shipped config" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_parser_lists_commands_and_data_modules():
    parser = build_parser()
    help_text = parser.format_help()
    for cmd in ("train", "evaluate", "reproduce", "data"):
        assert cmd in help_text
    args = parser.parse_args(["reproduce", "table2", "--quick", "--seeds", "1"])
    assert (args.tables, args.quick, args.seeds, args.protocols, args.jobs) == (["table2"], True, (1,), None, 1)
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "table9"])


def test_set_overrides_win_over_quick(toy_toml, capsys):
    assert main(["train", str(toy_toml), "--quick", "--set", "train.epochs=3", "--show"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["train"]["epochs"] == 3 and cfg["quick"] is True


def test_every_option_has_help_and_list_describes_configs(capsys):
    import argparse

    from eghn.cli import build_parser

    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.help is None and not isinstance(action, argparse._HelpAction):
                missing.append(" ".join(path) + " " + (action.option_strings or [action.dest])[0])

    walk(build_parser(), ["eghn"])
    assert not missing, f"options without help text: {missing}"
    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    assert "Table 2 -- CMU motion capture (also as table2/NAME)" in out
    lines = [line.split(None, 1) for line in out.splitlines() if line.startswith("  ")]
    assert all(len(parts) == 2 and parts[1].strip() for parts in lines), "a config without a description"
    assert main(["train", "table2/walk_eghn", "--show"]) == 0  # alias of mocap/walk_eghn
    assert json.loads(capsys.readouterr().out)["data"]["subject"] == "walk"


def test_plots_without_and_with_matplotlib(tmp_path, monkeypatch):
    from eghn.train import plots

    history = [{"epoch": e, "train_mse": 1.0 / e, "val_mse": 1.2 / e, "test_mse": 1.1 / e, "best_epoch": e}
               for e in (1, 2, 3)]
    assert plots.write_learning_curve(tmp_path, history).name == "learning_curve.png"
    notes: list[str] = []
    monkeypatch.setattr(plots, "_have_matplotlib", lambda: False)
    assert plots.write_learning_curve(tmp_path / "x", history, echo=notes.append) is None
    assert notes and "matplotlib is not installed" in notes[0]
