"""The M-complex dataset (paper Section 4.1): charged rigid complexes as graphs.

A sample is one simulated trajectory (:func:`~eghn.data.mcomplex_sim.simulate_mcomplex`):
input = positions and velocities at frame 10, target = positions at frame 25 (1500 steps of
``dt = 0.001`` later). The graph of a system of ``n`` particles has

* ``h``: node feature :math:`|v_i|` (shape ``(n, 1)``);
* :math:`\\mathcal{A}_{global}`: all ordered pairs ``i != j`` (``n (n - 1)`` edges) with
  edge features ``[c_i c_j, same-complex indicator, |x_i - x_j|^2]``;
* :math:`\\mathcal{A}_{local}`: the ordered pairs inside one complex, with the same three
  features (as in the paper's code).

Systems of different sizes (``J = 5`` system types) are batched node-wise by
:func:`eghn.data.collate`; no padding.

Files: ``DIR/config.json`` (generation config) and ``DIR/{train,val,test}.npz`` written by
:func:`generate_mcomplex_dataset` or ``eghn data mcomplex --out DIR ...``; arrays are read
(``allow_pickle=False``) only when the first sample is requested.

Paper presets (:data:`PAPER_CONFIGS`): ``(M, N/M)`` in (3,3), (5,5), (5,10), (10,10) for
``J`` in {1, 5}; 5000/2000/2000 train/val/test trajectories (the published code also has a
2000-train variant: ``--n-train 2000``).

Sanity figure: the best single-scalar extrapolation :math:`x_{10} + t\\,v_{10}` (``t`` fitted by
least squares on train, :func:`linear_extrapolation_baseline`) on (3,3), J=5 systems;
``python benchmarks/bench_mcomplex.py --linear --n-train 300 --n-test 300`` prints its test MSE
per coordinate and the fitted ``t``. The compiled and the PyTorch integrators agree up to
round-off that the chaotic dynamics amplifies in a few trajectories, so their figures differ
slightly. The Results page gives the same reference for the test split of its Table 1 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_write, atomic_write_text, clean_orphans, recover_dir, replace_dir, staging_dir
from .baselines import fit_linear_extrapolation, linear_extrapolation_mse
from .graph import Graph, collate
from .mcomplex_sim import PAPER_STEPS, MComplexTrajectories, check_config, simulate_mcomplex

__all__ = [
    "PAPER_CONFIGS",
    "SPLITS",
    "MComplexDataset",
    "generate_mcomplex_dataset",
    "linear_extrapolation_baseline",
    "mcomplex_graph",
    "register_cli",
]

SPLITS = ("train", "val", "test")
_STREAM = {"train": 0, "val": 1, "test": 2}
PAPER_CONFIGS: dict[str, dict[str, int]] = {
    f"{m}-{s}-{j}": {"n_complex": m, "avg_size": s, "n_types": j, "n_train": 5000, "n_val": 2000, "n_test": 2000}
    for (m, s) in ((3, 3), (5, 5), (5, 10), (10, 10))
    for j in (1, 5)
}
_ARRAYS = ("pos", "vel", "charge", "complex_id", "node_ptr", "system_type")
_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- graphs
_EDGE_CACHE: dict[int, tuple[Tensor, Tensor]] = {}


def _full_edges(n: int) -> tuple[Tensor, Tensor]:
    if n not in _EDGE_CACHE:
        idx = torch.arange(n)
        row = idx.repeat_interleave(n)
        col = idx.repeat(n)
        keep = row != col
        _EDGE_CACHE[n] = (row[keep], col[keep])
    return _EDGE_CACHE[n]


def mcomplex_graph(pos: Tensor, vel: Tensor, charge: Tensor, complex_id: Tensor,
                   target: Tensor | None = None) -> Graph:
    """Build the paper's graph of one charged-complex system.

    Args:
        pos, vel: input positions and velocities.
        charge: particle charges (+-1).
        complex_id: complex of every particle.
        target: optional ground-truth future positions.

    Shapes:
        pos, vel, target: ``(n, 3)``; charge, complex_id: ``(n,)``. The graph has
        ``E = n (n - 1)`` global edges with ``edge_attr`` ``(E, 3)`` and
        ``E_l = sum_k n_k (n_k - 1)`` local edges with ``local_edge_attr`` ``(E_l, 3)``.

    Example:
        >>> import torch
        >>> from eghn.data.mcomplex import mcomplex_graph
        >>> g = mcomplex_graph(torch.randn(5, 3), torch.randn(5, 3), torch.tensor([1, -1, 1, 1, -1]),
        ...                    torch.tensor([0, 0, 1, 1, 1]))
        >>> g.num_edges, tuple(g.edge_attr.shape), tuple(g.local_edge_index.shape)  # 5 * 4; 2 * 1 + 3 * 2
        (20, (20, 3), (2, 8))
    """
    n = pos.shape[0]
    if n < 2:
        raise ValueError(f"an M-complex system needs at least 2 particles, got {n}")
    row, col = _full_edges(n)
    row, col = row.to(pos.device), col.to(pos.device)
    charge = charge.to(pos)
    same = (complex_id[row] == complex_id[col]).to(pos)
    d2 = ((pos[row] - pos[col]) ** 2).sum(-1)
    attr = torch.stack((charge[row] * charge[col], same, d2), -1)
    local = same.bool()
    return Graph(
        pos=pos, h=vel.norm(dim=-1, keepdim=True), vel=vel,
        edge_index=torch.stack((row, col)), edge_attr=attr,
        local_edge_index=torch.stack((row[local], col[local])), local_edge_attr=attr[local],
        target=target,
    )


# ---------------------------------------------------------------------------- storage
def _save_npz(path: Path, tr: MComplexTrajectories, dtype: np.dtype) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(
            f, pos=tr.pos.astype(dtype), vel=tr.vel.astype(dtype), charge=tr.charge.astype(np.int8),
            complex_id=tr.complex_id.astype(np.int16), node_ptr=tr.node_ptr.astype(np.int64),
            system_type=tr.system_type.astype(np.int16), draws=tr.draws.astype(np.int32),
        )


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"M-complex split file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read M-complex file {path}: it is truncated or corrupt ({err}); "
                         f"generate the dataset again (eghn data mcomplex --overwrite)") from None
    missing = [k for k in _ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"{path} is not an M-complex file: arrays {missing} are missing")
    pos, vel, ptr = arrays["pos"], arrays["vel"], arrays["node_ptr"]
    n_nodes = int(ptr[-1]) if ptr.size else 0
    if (pos.ndim != 3 or pos.shape[2] != 3 or vel.shape != pos.shape or pos.shape[0] != n_nodes
            or arrays["charge"].shape != (n_nodes,) or arrays["complex_id"].shape != (n_nodes,)
            or arrays["system_type"].shape != (ptr.size - 1,) or (np.diff(ptr) < 2).any()):
        raise ValueError(f"{path} has inconsistent array shapes (pos {pos.shape}, vel {vel.shape}, "
                         f"node_ptr {ptr.shape}, last offset {n_nodes})")
    return arrays


def _read_config(root: Path) -> dict[str, Any]:
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"M-complex dataset config not found: {cfg_path} "
                                f"(generate one with `eghn data mcomplex --out {root}`)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_path} is not valid JSON (line {err.lineno}): {err.msg}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{cfg_path} is not valid JSON: byte {err.start} is not UTF-8 text (the file is "
                         f"damaged; remove {root} to have it generated again, or regenerate it with "
                         f"`eghn data mcomplex --out {root} --overwrite`)") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path} is not an M-complex dataset config (not a JSON object)")
    for key in ("n_complex", "avg_size", "n_types", "n_steps", "sample_every"):
        if key not in cfg:
            raise ValueError(f"{cfg_path} lacks the key {key!r}")
    return cfg


def generate_mcomplex_dataset(
    out: str | os.PathLike,
    n_complex: int = 3,
    avg_size: int = 3,
    n_types: int = 5,
    *,
    n_train: int = 5000,
    n_val: int = 2000,
    n_test: int = 2000,
    seed: int = 43,
    dtype: str = "float32",
    progress: bool = True,
    overwrite: bool = False,
    **sim_kwargs: Any,
) -> Path:
    """Simulate the three splits and write ``out/config.json`` and ``out/{split}.npz``.

    Splits use streams 0/1/2 of ``seed`` and share the system types, so
    ``MComplexDataset.generate(..., split=s, seed=seed)`` reproduces split ``s``.
    ``sim_kwargs`` go to :func:`simulate_mcomplex` (``integrator``, ``device``, ...).

    Example:
        >>> import tempfile
        >>> from eghn.data import MComplexDataset
        >>> from eghn.data.mcomplex import generate_mcomplex_dataset
        >>> root = generate_mcomplex_dataset(tempfile.mkdtemp() + "/m", 2, 3, 1, n_train=3, n_val=1, n_test=1,
        ...                                  n_steps=300, sample_every=100, progress=False)
        >>> sorted(p.name for p in root.iterdir())
        ['config.json', 'test.npz', 'train.npz', 'val.npz']
        >>> len(MComplexDataset(root, "train", input_frame=0, target_frame=2))
        3
    """
    check_config(n_complex, avg_size, n_types)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    out = Path(out)
    recover_dir(out)
    if (out / "config.json").exists() and not overwrite:
        raise FileExistsError(f"{out / 'config.json'} exists; pass overwrite=True (--overwrite) to replace it")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _DATASET_FILES)
        if foreign:
            raise FileExistsError(f"{out} holds other files ({', '.join(foreign[:3])}"
                                  f"{', ...' if len(foreign) > 3 else ''}); give the dataset a folder of its own")
    elif out.exists():
        raise FileExistsError(f"{out} exists and is not a folder")
    clean_orphans(out.parent if out.parent.is_dir() else out)
    # the whole set is written into a sibling folder and swapped in at the end, so that a kill
    # leaves the old dataset (or none) and never a mix of old and new splits
    staged = staging_dir(out)
    try:
        counts = {"train": n_train, "val": n_val, "test": n_test}
        config: dict[str, Any] = {}
        for split in SPLITS:
            tr = simulate_mcomplex(n_complex, avg_size, n_types, counts[split], seed=seed,
                                   stream=_STREAM[split], progress=progress, **sim_kwargs)
            _save_npz(staged / f"{split}.npz", tr, np.dtype(dtype))
            config = {k: v for k, v in tr.config.items() if k not in ("stream", "n_trajectories")}
            config[f"n_{split}"] = counts[split]
        config.update({f"n_{s}": counts[s] for s in SPLITS}, format_version=_FORMAT_VERSION, dtype=dtype,
                      generator="eghn.data.mcomplex_sim.simulate_mcomplex")
        atomic_write_text(staged / "config.json", json.dumps(config, indent=2) + "\n")
        replace_dir(staged, out)
    except BaseException:
        import shutil

        shutil.rmtree(staged, ignore_errors=True)
        raise
    return out


_DATASET_FILES = frozenset({"config.json", *(f"{s}.npz" for s in SPLITS)})


# ---------------------------------------------------------------------------- dataset
class MComplexDataset:
    """Charged rigid complexes, one graph per trajectory (paper Section 4.1).

    Args:
        root: directory written by :func:`generate_mcomplex_dataset`.
        split: ``"train"``, ``"val"`` or ``"test"``.
        input_frame, target_frame: recorded frames used as input and target (paper: 10, 25).
        max_samples: keep only the first ``max_samples`` trajectories (error if fewer exist).
        dtype: floating dtype of the graphs.

    ``ds[i]`` is a :class:`~eghn.data.Graph` (see :func:`mcomplex_graph`) with ``target``;
    ``node_dim = 1``, ``edge_dim = 3``, ``local_edge_dim = 3``.

    Example:
        >>> ds = MComplexDataset.generate(3, 3, 5, 2, n_steps=600, sample_every=100,
        ...                               input_frame=1, target_frame=4)
        >>> g = ds.collate([0, 1])
        >>> g.num_graphs, g.pos.shape, g.edge_attr.shape, ds.node_dim, ds.edge_dim
        (2, torch.Size([18, 3]), torch.Size([144, 3]), 1, 3)
    """

    node_dim = 1
    edge_dim = 3
    local_edge_dim = 3
    #: power of length of each feature column (see :mod:`eghn.data.units`): the speed ``|v|``; charge
    #: product, same-complex flag, squared distance
    feature_length_powers: ClassVar[dict[str, tuple[int, ...]]] = {
        "h": (1,), "edge_attr": (0, 0, 2), "local_edge_attr": (0, 0, 2)}

    def __init__(self, root: str | os.PathLike, split: str = "train", *, input_frame: int = 10,
                 target_frame: int = 25, max_samples: int | None = None, dtype: torch.dtype = torch.float32):
        self._check_split(split)
        self.root = Path(root)
        recover_dir(self.root)  # a replacement interrupted by a kill: back to the old dataset
        if not self.root.is_dir():
            raise FileNotFoundError(f"M-complex dataset directory not found: {self.root}")
        self.config = _read_config(self.root)
        self.split = split
        self.path = self.root / f"{split}.npz"
        if not self.path.is_file():
            raise FileNotFoundError(f"M-complex split file not found: {self.path}")
        n_avail = self.config.get(f"n_{split}")
        self._arrays: dict[str, np.ndarray] | None = None
        self._init(input_frame, target_frame, max_samples, dtype, n_avail)

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")

    def _init(self, input_frame: int, target_frame: int, max_samples: int | None, dtype: torch.dtype,
              n_avail: int | None) -> None:
        n_frames = -(-int(self.config["n_steps"]) // int(self.config["sample_every"]))
        for name, f in (("input_frame", input_frame), ("target_frame", target_frame)):
            if not 0 <= f < n_frames:
                raise ValueError(f"{name}={f} is outside the {n_frames} recorded frames of this dataset")
        if target_frame <= input_frame:
            raise ValueError(f"target_frame ({target_frame}) must come after input_frame ({input_frame})")
        if n_avail is None:
            n_avail = len(self._load()["node_ptr"]) - 1
        if max_samples is not None:
            if max_samples < 1 or max_samples > n_avail:
                raise ValueError(f"max_samples={max_samples} but the {self.split} split has {n_avail} samples")
            n_avail = max_samples
        self.input_frame, self.target_frame, self.dtype = input_frame, target_frame, dtype
        self._len = int(n_avail)

    @classmethod
    def generate(cls, n_complex: int = 3, avg_size: int = 3, n_types: int = 5, n_samples: int = 100, *,
                 split: str = "train", seed: int = 43, input_frame: int = 10, target_frame: int = 25,
                 dtype: torch.dtype = torch.float32, **sim_kwargs: Any) -> MComplexDataset:
        """Simulate a split in memory (no files); same streams as :func:`generate_mcomplex_dataset`."""
        cls._check_split(split)
        tr = simulate_mcomplex(n_complex, avg_size, n_types, n_samples, seed=seed, stream=_STREAM[split],
                               **sim_kwargs)
        return cls.from_trajectories(tr, split=split, input_frame=input_frame, target_frame=target_frame,
                                     dtype=dtype)

    @classmethod
    def from_trajectories(cls, tr: MComplexTrajectories, *, split: str = "train", input_frame: int = 10,
                          target_frame: int = 25, dtype: torch.dtype = torch.float32) -> MComplexDataset:
        """Wrap trajectories from :func:`simulate_mcomplex` (kept in memory)."""
        cls._check_split(split)
        self = cls.__new__(cls)
        self.root, self.path, self.split = None, None, split
        self.config = {k: v for k, v in tr.config.items() if k != "stream"}
        self._arrays = {"pos": tr.pos, "vel": tr.vel, "charge": tr.charge, "complex_id": tr.complex_id,
                        "node_ptr": tr.node_ptr, "system_type": tr.system_type, "draws": tr.draws}
        self._init(input_frame, target_frame, None, dtype, len(tr))
        return self

    # ------------------------------------------------------------------ access
    def _load(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            arrays = _load_npz(self.path)
            n_frames = -(-int(self.config["n_steps"]) // int(self.config["sample_every"]))
            if arrays["pos"].shape[1] != n_frames:
                raise ValueError(f"{self.path} has {arrays['pos'].shape[1]} frames but config.json implies {n_frames}")
            if len(arrays["node_ptr"]) - 1 < getattr(self, "_len", 0):
                raise ValueError(f"{self.path} holds {len(arrays['node_ptr']) - 1} trajectories but config.json "
                                 f"promises {self._len}")
            self._arrays = arrays
        return self._arrays

    def __len__(self) -> int:
        return self._len

    def _slice(self, i: int) -> tuple[int, int]:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"sample index must be an integer, got {type(i).__name__}")
        if not -self._len <= i < self._len:
            raise IndexError(f"sample {i} out of range for {self._len} samples")
        i = int(i) % self._len
        ptr = self._load()["node_ptr"]
        return int(ptr[i]), int(ptr[i + 1])

    def __getitem__(self, i: int) -> Graph:
        a, b = self._slice(i)
        arr = self._load()

        def t(x: np.ndarray) -> Tensor:
            return torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype)

        return mcomplex_graph(
            pos=t(arr["pos"][a:b, self.input_frame]), vel=t(arr["vel"][a:b, self.input_frame]),
            charge=t(arr["charge"][a:b]), complex_id=torch.as_tensor(arr["complex_id"][a:b].astype(np.int64)),
            target=t(arr["pos"][a:b, self.target_frame]),
        )

    def collate(self, indices: Sequence[int]) -> Graph:
        """Batched :class:`~eghn.data.Graph` of the given samples."""
        indices = list(indices)
        if not indices:
            raise ValueError("collate() needs at least one sample index")
        return collate([self[i] for i in indices])

    def system_type(self, i: int) -> int:
        """System type (``0 .. J-1``) of sample ``i``."""
        self._slice(i)
        return int(self._load()["system_type"][int(i) % self._len])

    def __repr__(self) -> str:
        c = self.config
        return (f"MComplexDataset(split={self.split!r}, n={self._len}, (M, N/M, J)=({c.get('n_complex')}, "
                f"{c.get('avg_size')}, {c.get('n_types')}), frames {self.input_frame}->{self.target_frame})")


# ---------------------------------------------------------------------------- baseline
def linear_extrapolation_baseline(train: MComplexDataset, test: MComplexDataset) -> tuple[float, float]:
    """Fit ``x_T = x_0 + t v_0`` (one scalar ``t``, least squares on ``train``); test MSE
    (:mod:`eghn.data.baselines` on the stored arrays, in the simulation's unit).

    Returns ``(t, mse)`` with the MSE averaged over particles and coordinates of ``test``.

    Example:
        >>> from eghn.data import MComplexDataset
        >>> from eghn.data.mcomplex import linear_extrapolation_baseline
        >>> kw = dict(n_steps=300, sample_every=100, input_frame=0, target_frame=2)
        >>> train = MComplexDataset.generate(2, 3, 1, 4, split="train", **kw)
        >>> test = MComplexDataset.generate(2, 3, 1, 2, split="test", **kw)
        >>> t, mse = linear_extrapolation_baseline(train, test)
        >>> t > 0, mse >= 0
        (True, True)
    """
    def stack(ds: MComplexDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arr = ds._load()
        n = int(arr["node_ptr"][len(ds)])
        return (arr["pos"][:n, ds.input_frame].astype(np.float64), arr["vel"][:n, ds.input_frame].astype(np.float64),
                arr["pos"][:n, ds.target_frame].astype(np.float64))

    t = fit_linear_extrapolation(*stack(train))
    return t, linear_extrapolation_mse(t, *stack(test))


# ---------------------------------------------------------------------------- CLI
def _cli(args: argparse.Namespace) -> int:
    if args.preset:
        p = PAPER_CONFIGS[args.preset]
        m, s, j = p["n_complex"], p["avg_size"], p["n_types"]
    else:
        m, s, j = args.complexes, args.avg_size, args.types
    out = generate_mcomplex_dataset(
        args.out, m, s, j, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed,
        integrator=args.integrator, device=args.device, dtype=args.dtype, n_steps=args.steps,
        overwrite=args.overwrite, progress=not args.quiet, workers=args.workers,
    )
    print(f"wrote {out}/config.json and {', '.join(f'{sp}.npz' for sp in SPLITS)}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``mcomplex`` to the ``eghn data`` subcommands (handler in ``func``).

    Example:
        >>> import argparse
        >>> from eghn.data.mcomplex import register_cli
        >>> parser = argparse.ArgumentParser(prog="eghn data")
        >>> _ = register_cli(parser.add_subparsers())
        >>> args = parser.parse_args(["mcomplex", "--out", "data/m3", "-M", "5"])
        >>> args.out, args.complexes, args.types
        ('data/m3', 5, 5)
    """
    p = subparsers.add_parser(
        "mcomplex", help="simulate the M-complex dataset (paper Section 4.1)",
        description="Simulate charged rigid complexes and write DIR/config.json + DIR/{train,val,test}.npz.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--complexes", "-M", type=int, default=3, help="number of complexes M (default 3)")
    p.add_argument("--avg-size", type=int, default=3, help="average complex size N/M (default 3)")
    p.add_argument("--types", "-J", type=int, default=5, help="number of system types J (default 5)")
    p.add_argument("--preset", choices=sorted(PAPER_CONFIGS), metavar="M-A-J",
                   help="paper configuration M-N/M-J, one of " + ", ".join(sorted(PAPER_CONFIGS))
                   + " (overrides -M/-J)")
    p.add_argument("--n-train", type=int, default=5000, help="training trajectories (default 5000)")
    p.add_argument("--n-val", type=int, default=2000, help="validation trajectories (default 2000)")
    p.add_argument("--n-test", type=int, default=2000, help="test trajectories (default 2000)")
    p.add_argument("--seed", type=int, default=43, help="random seed of the simulation (default 43)")
    p.add_argument("--integrator", choices=("paper", "exact"), default="paper",
                   help="'paper': the published rigid-body update; 'exact': symplectic (default paper)")
    p.add_argument("--steps", type=int, default=PAPER_STEPS, help="simulation steps (default 5000)")
    p.add_argument("--device", default="cpu", help="torch device for the integration (cpu, cuda)")
    p.add_argument("--workers", type=int, default=1,
                   help="parallel CPU workers (threads with the compiled numba kernel, else processes; default 1)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="storage dtype")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)
    return p

