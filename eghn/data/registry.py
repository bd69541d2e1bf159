"""Datasets by name, so that configuration files can select them.

The paper's datasets live in their own modules and are imported lazily: a module that is
missing or fails to import only makes *its* dataset unavailable (with the import error in the
message), never the command line as a whole.

Every dataset class follows one interface: ``cls(**options, split="train"|"val"|"test")``,
``len(ds)``, ``ds[i] -> Graph`` (with ``target``), properties ``node_dim``, ``edge_dim`` and
``local_edge_dim``, and ``ds.collate(indices) -> Graph``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "available_datasets",
    "build_dataset",
    "dataset_modules",
    "get_dataset_class",
    "mcomplex_on_demand",
    "register_dataset",
]

#: name -> (module, class or factory name) of the built-in datasets: the paper's and your own
#: system from arrays (``arrays``).
_BUILTIN: dict[str, tuple[str, str]] = {
    "arrays": ("eghn.data.arrays", "PointCloudDataset"),
    "mcomplex": ("eghn.data.registry", "mcomplex_on_demand"),
    "mocap": ("eghn.data.mocap", "MocapDataset"),
    "protein": ("eghn.data.protein", "ProteinMDDataset"),
}
_EXTRA: dict[str, type] = {}


def register_dataset(name: str, cls: type) -> type:
    """Register a dataset class under ``name`` (e.g. a user's own data, or a test fixture).

    Example:
        >>> from eghn.data import MComplexDataset
        >>> from eghn.data.registry import available_datasets, get_dataset_class, register_dataset
        >>> register_dataset("my-complexes", MComplexDataset) is MComplexDataset
        True
        >>> "my-complexes" in available_datasets(), get_dataset_class("my-complexes").__name__
        (True, 'MComplexDataset')
    """
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in dataset name")
    _EXTRA[name] = cls
    return cls


def available_datasets() -> list[str]:
    """All dataset names (built-in and registered), sorted; built-ins may still fail to import.

    Example:
        >>> from eghn.data.registry import available_datasets
        >>> {"arrays", "mcomplex", "mocap", "protein"} <= set(available_datasets())
        True
    """
    return sorted({*_BUILTIN, *_EXTRA})


def get_dataset_class(name: str) -> type:
    """The dataset class registered as ``name``; clear errors for unknown or unimportable ones.

    Example:
        >>> from eghn.data.registry import get_dataset_class
        >>> get_dataset_class("arrays").__name__
        'PointCloudDataset'
    """
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _BUILTIN:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    mod_name, cls_name = _BUILTIN[name]
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ImportError(f"dataset {name!r} is unavailable: cannot import {mod_name} ({e})") from e
    try:
        return getattr(mod, cls_name)
    except AttributeError:
        raise ImportError(f"dataset {name!r} is unavailable: {mod_name} has no {cls_name}") from None


def build_dataset(name: str, split: str, **options: Any):
    """Build split ``split`` of dataset ``name`` with constructor keywords ``options``.

    Example:
        >>> import tempfile
        >>> from eghn.data import MComplexDataset
        >>> from eghn.data.mcomplex import generate_mcomplex_dataset
        >>> from eghn.data.registry import build_dataset
        >>> root = generate_mcomplex_dataset(tempfile.mkdtemp() + "/m", 2, 3, 1, n_train=3, n_val=1, n_test=1,
        ...                                  n_steps=300, sample_every=100, progress=False)
        >>> ds = build_dataset("mcomplex", "val", root=root, input_frame=0, target_frame=2)
        >>> type(ds).__name__, len(ds), ds.split
        ('MComplexDataset', 1, 'val')
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    return get_dataset_class(name)(**options, split=split)


_CLI_MODULES = {"mcomplex": "eghn.data.mcomplex", "mocap": "eghn.data.mocap", "protein": "eghn.data.protein"}


def dataset_modules() -> Iterator[tuple[str, ModuleType]]:
    """``(name, module)`` for every dataset module that imports and has ``register_cli``.

    A missing module is skipped silently; one that fails to import is skipped with a warning.

    Example:
        >>> from eghn.data.registry import dataset_modules
        >>> [name for name, module in dataset_modules()]
        ['mcomplex', 'mocap', 'protein']
    """
    for name, mod_name in _CLI_MODULES.items():
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name != mod_name:
                warnings.warn(f"eghn data {name}: unavailable ({e})", stacklevel=2)
            continue
        except Exception as e:  # a broken module must not take the command line down
            warnings.warn(f"eghn data {name}: unavailable ({type(e).__name__}: {e})", stacklevel=2)
            continue
        if hasattr(mod, "register_cli"):
            yield name, mod


def mcomplex_on_demand(split: str = "train", *, root: str | os.PathLike | None = None, n_complex: int = 3,
                       avg_size: int = 3, n_types: int = 1, n_train: int = 5000, n_val: int = 2000,
                       n_test: int = 2000, seed: int = 43, integrator: str = "paper", input_frame: int = 10,
                       target_frame: int = 25, max_samples: int | None = None, n_steps: int | None = None,
                       progress: bool = True):
    """An :class:`~eghn.data.mcomplex.MComplexDataset` split, simulated on first use.

    With ``root`` the dataset in that folder is used (written by ``eghn data mcomplex``).
    Without it, the system ``(n_complex, avg_size, n_types)`` with ``n_train/n_val/n_test``
    trajectories and ``seed`` is generated once into the user cache
    (``<cache>/mcomplex/M{M}_S{N/M}_J{J}_...``; atomically, so concurrent runs do not clash)
    and reused by every later run with the same parameters. ``n_steps`` shortens the
    simulation (default: the paper's 5000 steps; frames are recorded every 100 steps).

    Example:
        >>> import tempfile
        >>> from eghn.data.mcomplex import generate_mcomplex_dataset
        >>> from eghn.data.registry import mcomplex_on_demand
        >>> root = generate_mcomplex_dataset(tempfile.mkdtemp() + "/m", 2, 3, 1, n_train=3, n_val=1, n_test=1,
        ...                                  n_steps=300, sample_every=100, progress=False)
        >>> ds = mcomplex_on_demand("train", root=root, input_frame=0, target_frame=2)
        >>> len(ds), ds.node_dim, ds.edge_dim
        (3, 1, 3)
    """
    from ..io import TMP_PREFIX, clean_orphans, recover_dir, replace_dir
    from .mcomplex import MComplexDataset, generate_mcomplex_dataset

    if root is None:
        from .paths import cache_dir

        key = (f"M{n_complex}_S{avg_size}_J{n_types}_tr{n_train}_va{n_val}_te{n_test}_seed{seed}"
               f"_{integrator}" + (f"_steps{n_steps}" if n_steps is not None else ""))
        root = cache_dir() / "mcomplex" / key
        recover_dir(root)  # a regeneration interrupted between its two renames
        missing = [f for f in ("config.json", "train.npz", "val.npz", "test.npz") if not (Path(root) / f).is_file()]
        if missing and Path(root).is_dir():
            warnings.warn(f"the cached M-complex dataset {root} lacks {', '.join(missing)}; generating it again",
                          stacklevel=2)
        if missing:
            Path(root).parent.mkdir(parents=True, exist_ok=True)
            clean_orphans(Path(root).parent)  # folders of generations killed long ago
            tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key}-", dir=Path(root).parent))
            try:
                generate_mcomplex_dataset(tmp / "data", n_complex, avg_size, n_types, n_train=n_train,
                                          n_val=n_val, n_test=n_test, seed=seed, integrator=integrator,
                                          progress=progress,
                                          **({"n_steps": n_steps} if n_steps is not None else {}))
                if Path(root).is_dir():  # an incomplete cache: swap the whole folder
                    replace_dir(tmp / "data", root)
                else:
                    try:
                        os.replace(tmp / "data", root)
                    except OSError:  # another process finished first
                        if not (Path(root) / "config.json").is_file():
                            raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return MComplexDataset(root, split, input_frame=input_frame, target_frame=target_frame,
                           max_samples=max_samples)
