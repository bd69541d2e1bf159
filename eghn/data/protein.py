"""Protein molecular dynamics as graphs (paper Section 4.3).

The task of the paper: from the positions :math:`x_t` and velocities :math:`v_t` of the heavy
atoms of a protein at frame ``t`` of an MD trajectory, predict the positions
:math:`x_{t+\\delta}` ``delta`` frames later (the paper uses the backbone of adenylate kinase,
AdK, and :math:`\\delta = 15`).

Definitions used here (all positions in Ångström, exactly as the trajectory stores them; no
centring, no periodic wrapping or minimum-image convention, so unwrap a trajectory first if
the protein crosses the box):

* **nodes**: the atoms of ``selection`` (default ``"backbone"``, i.e. N, CA, C, O) with every
  hydrogen removed, whatever the selection says. An atom is a hydrogen when its element (from
  the topology, else guessed from its name by MDAnalysis) is H or D, or when the topology
  gives it a mass between ``0.5`` and ``1.5`` u.
* **velocity** :math:`v_t = x_{t+1} - x_t` (Å per frame); **target** :math:`x_{t+\\delta}`.
  A sample exists for every start frame ``t = 0 .. T-1-delta`` (``T - delta`` frame pairs).
* **split**: chronological. The start frames are cut into consecutive blocks train / val /
  test (optionally separated by ``gap`` unused start frames). ``split_sizes`` is either three
  fractions of the available pairs or three explicit counts. The default,
  :data:`PAPER_SPLIT_FRACTIONS` = (2481, 827, 878) / 4186, are the paper's proportions for the
  AdK equilibrium trajectory (4187 frames; the paper's counts sum to 4186). With
  ``delta = 15`` that trajectory has 4172 pairs, which these fractions cut into
  2472 / 824 / 876; the embedded 98-frame AdK trajectory has 83 pairs, cut into 49 / 16 / 18.
  The last block takes the remainder when the fractions sum to one.
* :math:`\\mathcal{A}_{global}` (``edge_index``): every ordered pair ``(i, j)``, ``i != j``,
  with :math:`\\|x_i - x_j\\| \\le` ``cutoff`` (paper: 10 Å) at frame ``t``, found with
  MDAnalysis' grid neighbour search (``self_capped_distance``), so the cost grows with the
  number of neighbours rather than :math:`N^2`. Both directions are listed; edges are sorted
  by (receiver, sender).
* edge features (``edge_features``): ``"sqdist"`` (default) -- :math:`\\|x_i - x_j\\|^2 /
  \\text{cutoff}^2` in [0, 1], one column; ``"distance"`` -- :math:`\\|x_i - x_j\\| /
  \\text{cutoff}`; ``"none"`` -- no edge attributes (``edge_dim = 0``). All are invariant.
* :math:`\\mathcal{A}_{local}` (``local_edge_index``): covalent bonds with both atoms among the
  nodes, both directions, no attributes. Taken from the topology; when the topology has no
  bonds they are guessed by MDAnalysis from van der Waals radii on the first frame
  (``guess_bonds=True``). A CA-only selection therefore has no local edges.
* node features (``node_features``): ``"name"`` (default) -- one-hot of the atom name over the
  sorted atom names present in the selection (backbone: C, CA, N, O -> 4 columns);
  ``"element"`` -- one-hot of the element over the elements present; ``"mass"`` -- the atom
  mass divided by 12 (one column). All are invariant.
* the inputs of the authors' released code (``node_features="released"`` with
  ``edge_features="released"``, the ``released`` protocol of ``protein/adk_eghn``): node
  features :math:`[\\|v_i\\|,\\; q_i / \\max_j q_j]` (speed in Å per frame; topology partial
  charge over the largest partial charge of the selection); global edge features
  :math:`[\\|x_i - x_j\\|,\\; \\|x_i - x_j\\|^2]` in Å and Å\\ :sup:`2`; local edge features
  [bond length in the first frame of the trajectory, :math:`\\|x_i - x_j\\|^2` at frame
  ``t``]. The released code lists every bond once (one direction) where this dataset lists
  both; that difference stays.

Reading a long trajectory is slow, so the positions of the selected atoms (``(T, N, 3)``
float32), the bonds and the per-atom names/elements/masses are cached once as
``<key>.npz`` + ``<key>.json`` under ``cache_dir``; ``key`` hashes the resolved file paths,
their sizes and modification times, the selection and the bond options. Cutoff edges depend on
the frame and on ``cutoff`` and are recomputed in ``__getitem__`` (one KD-tree query per
frame). Caches are read with ``allow_pickle=False``.

For the paper's "MPNN under test-time rotation" experiment, ``rotate=True`` /
``translate=True`` apply a random rotation :math:`Q` (proper, uniformly distributed) and a
translation :math:`t \\sim \\mathcal{N}(0, \\sigma^2 I)` to every sample:
:math:`x \\mapsto x Q^\\top + t`, :math:`v \\mapsto v Q^\\top`, same for the target. The
transform of sample ``i`` depends only on ``(seed, i)``, so it is reproducible whatever the
order of access.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .graph import Graph, collate
from .paths import cache_dir as _user_cache_dir

__all__ = [
    "PAPER_SPLIT_FRACTIONS",
    "ProteinFrames",
    "ProteinMDDataset",
    "chronological_split",
    "cutoff_edges",
    "embedded_adk_files",
    "extract_frames",
    "fetch_adk_equilibrium",
    "hydrogen_mask",
    "load_frames",
    "register_cli",
    "select_heavy_atoms",
]

#: The paper's train/val/test proportions (2481 / 827 / 878 frame pairs out of 4186).
PAPER_SPLIT_FRACTIONS: tuple[float, float, float] = (2481 / 4186, 827 / 4186, 878 / 4186)

_SPLITS = ("train", "val", "test")
_CACHE_VERSION = 2  # 2: partial charges added; version-1 caches are still read (without charges)
_READABLE_CACHE_VERSIONS = (1, 2)
_NODE_FEATURES = ("name", "element", "mass", "released")
_EDGE_FEATURES = ("sqdist", "distance", "none", "released")
_SOURCES = ("adk-embedded", "adk-equilibrium")

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------- file helpers
def embedded_adk_files() -> tuple[str, str]:
    """The AdK test trajectory shipped with MDAnalysisTests: ``(adk.psf, adk_dims.dcd)``.

    3341 atoms (855 backbone atoms), 98 frames of a closed-to-open transition.

    Example:
        >>> from pathlib import Path
        >>> from eghn.data.protein import embedded_adk_files
        >>> [Path(f).name for f in embedded_adk_files()]
        ['adk.psf', 'adk_dims.dcd']
    """
    try:
        from MDAnalysisTests.datafiles import DCD, PSF
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the embedded AdK trajectory comes from the MDAnalysisTests package; install it with "
            "`pip install MDAnalysisTests` (or `pip install eghn[test]`)"
        ) from err
    return str(PSF), str(DCD)


def fetch_adk_equilibrium(data_home: PathLike | None = None) -> tuple[str, str]:
    """Download (once) the paper's AdK equilibrium trajectory; return its files.

    Uses ``MDAnalysisData.datasets.fetch_adk_equilibrium`` (needs internet on first use).
    Returns ``(topology, trajectory)`` paths.

    Example:
        Needs the network and the MDAnalysisData package, so it is skipped when the docs are tested.

        >>> from eghn.data.protein import fetch_adk_equilibrium
        >>> topology, trajectory = fetch_adk_equilibrium()  # doctest: +SKIP
    """
    try:
        from MDAnalysisData import datasets
    except ImportError as err:
        raise ImportError(
            "the AdK equilibrium trajectory of the paper is downloaded with the MDAnalysisData "
            "package, which is not installed; install it with `pip install MDAnalysisData` "
            "(or `pip install -e '.[full]'` in the source checkout), or use the embedded trajectory "
            "(ProteinMDDataset() with no files)"
        ) from err
    kwargs = {} if data_home is None else {"data_home": str(data_home)}
    bunch = datasets.fetch_adk_equilibrium(**kwargs)
    return str(bunch.topology), str(bunch.trajectory)


def _default_cache_dir() -> Path:
    """``protein`` under the user cache of :func:`eghn.data.paths.cache_dir`."""
    return _user_cache_dir() / "protein"


def _as_file_list(trajectory: PathLike | Sequence[PathLike] | None) -> list[str]:
    if trajectory is None:
        return []
    if isinstance(trajectory, (str, os.PathLike)):
        return [os.fspath(trajectory)]
    return [os.fspath(t) for t in trajectory]


def _check_files_exist(topology: PathLike, trajectory: list[str]) -> None:
    for kind, path in [("topology", os.fspath(topology))] + [("trajectory", t) for t in trajectory]:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{kind} file not found: {path!r}")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"{kind} file is not readable: {path!r}")


def _open_universe(topology: PathLike, trajectory: list[str]):
    import MDAnalysis as mda

    _check_files_exist(topology, trajectory)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if trajectory:
                return mda.Universe(os.fspath(topology), *trajectory)
            return mda.Universe(os.fspath(topology))
    except Exception as err:
        files = ", ".join([repr(os.fspath(topology))] + [repr(t) for t in trajectory])
        raise ValueError(f"MDAnalysis could not read {files}: {type(err).__name__}: {err}") from err


# ---------------------------------------------------------------------------- atoms and bonds
def _elements(atoms) -> np.ndarray:
    """Element symbols (upper case) of ``atoms``: from the topology, else guessed from names."""
    elements = None
    if hasattr(atoms, "elements"):
        elements = np.asarray(atoms.elements, dtype=str)
        if np.any(np.char.strip(elements) == ""):
            elements = None
    if elements is None:
        from MDAnalysis.guesser.default_guesser import DefaultGuesser

        elements = np.asarray(DefaultGuesser(None).guess_types(atom_types=np.asarray(atoms.names)), dtype=str)
    return np.char.upper(np.char.strip(elements))


def hydrogen_mask(atoms) -> np.ndarray:
    """Boolean mask, ``True`` for hydrogens (element H or D, or a topology mass in (0.5, 1.5)).

    Shapes:
        - returns :math:`(N,)` for an AtomGroup of ``N`` atoms

    Example:
        >>> import MDAnalysis as mda
        >>> from eghn.data.protein import embedded_adk_files, hydrogen_mask
        >>> u = mda.Universe(*embedded_adk_files())
        >>> int(hydrogen_mask(u.atoms).sum()), u.atoms.n_atoms
        (1685, 3341)
    """
    mask = np.isin(_elements(atoms), ["H", "D"])
    if hasattr(atoms, "masses"):
        masses = np.asarray(atoms.masses, dtype=float)
        mask |= (masses > 0.5) & (masses < 1.5)
    return mask


def select_heavy_atoms(universe, selection: str = "backbone"):
    """``universe.select_atoms(selection)`` with every hydrogen removed.

    Raises:
        ValueError: bad selection syntax, or no heavy atom selected.

    Example:
        >>> import MDAnalysis as mda
        >>> from eghn.data.protein import embedded_adk_files, select_heavy_atoms
        >>> u = mda.Universe(*embedded_adk_files())
        >>> select_heavy_atoms(u).n_atoms, select_heavy_atoms(u, "name CA").n_atoms
        (855, 214)
    """
    try:
        atoms = universe.select_atoms(selection)
    except Exception as err:
        raise ValueError(f"invalid atom selection {selection!r}: {err}") from err
    n_selected = atoms.n_atoms
    if n_selected:
        atoms = atoms[~hydrogen_mask(atoms)]
    if atoms.n_atoms == 0:
        detail = "no atoms" if n_selected == 0 else f"{n_selected} atoms, all hydrogens"
        raise ValueError(
            f"atom selection {selection!r} matched {detail} of the {universe.atoms.n_atoms}-atom "
            f"system (hydrogens are always removed); nothing to build a graph from"
        )
    return atoms


def _bonds_among(atoms, guess_bonds: bool) -> tuple[np.ndarray, bool]:
    """Covalent bonds with both ends in ``atoms`` as local indices ``(B, 2)``, ``i < j``."""
    local = np.full(int(atoms.universe.atoms.n_atoms), -1, dtype=np.int64)
    local[atoms.indices] = np.arange(atoms.n_atoms)
    guessed = False
    try:
        pairs = np.asarray(atoms.universe.bonds.indices, dtype=np.int64).reshape(-1, 2)
    except Exception:  # NoDataError: the topology has no bonds
        if not guess_bonds:
            return np.empty((0, 2), dtype=np.int64), False
        from MDAnalysis.guesser.default_guesser import DefaultGuesser

        try:
            found = DefaultGuesser(None).guess_bonds(atoms, atoms.positions)
        except Exception as err:
            raise ValueError(
                f"the topology has no bonds and MDAnalysis could not guess them for the selection "
                f"({type(err).__name__}: {err}); pass guess_bonds=False to build graphs without "
                f"local edges"
            ) from err
        pairs = np.asarray(found, dtype=np.int64).reshape(-1, 2)
        guessed = True
    pairs = local[pairs]
    pairs = pairs[(pairs >= 0).all(1)]
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(pairs, axis=0) if len(pairs) else pairs
    return pairs.astype(np.int64), guessed


# ---------------------------------------------------------------------------- preprocessed frames
@dataclass
class ProteinFrames:
    """The preprocessed content of a trajectory: what the dataset needs, nothing more.

    Shapes:
        - positions: :math:`(T, N, 3)` float32, Å
        - bonds: :math:`(B, 2)` int64 local atom indices, ``i < j``
        - names, elements: :math:`(N,)` str; masses: :math:`(N,)` float64
        - atom_indices: :math:`(N,)` int64 indices of the atoms in the source Universe
        - charges: :math:`(N,)` float64 topology partial charges (``e``), or None when the
          topology has none (or the cache predates them)

    Example:
        >>> import numpy as np
        >>> from eghn.data.protein import ProteinFrames
        >>> frames = ProteinFrames(positions=np.zeros((4, 2, 3), np.float32), bonds=np.array([[0, 1]]),
        ...                        names=np.array(["C", "N"]), elements=np.array(["C", "N"]),
        ...                        masses=np.array([12.0, 14.0]), atom_indices=np.arange(2)).validate()
        >>> frames.n_frames, frames.n_atoms
        (4, 2)
    """

    positions: np.ndarray
    bonds: np.ndarray
    names: np.ndarray
    elements: np.ndarray
    masses: np.ndarray
    atom_indices: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    charges: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[1])

    def validate(self, source: str = "preprocessed frames") -> ProteinFrames:
        """Check shapes, dtypes, finiteness and bond indices; raise ValueError naming ``source``."""
        p = self.positions
        if p.ndim != 3 or p.shape[2] != 3:
            raise ValueError(f"{source}: positions must have shape (T, N, 3), got {p.shape}")
        n = p.shape[1]
        if n == 0 or p.shape[0] == 0:
            raise ValueError(f"{source}: no atoms or no frames (positions shape {p.shape})")
        for name in ("names", "elements", "masses", "atom_indices"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{source}: {name} must have shape ({n},), got {getattr(self, name).shape}")
        if self.charges is not None:
            if self.charges.shape != (n,):
                raise ValueError(f"{source}: charges must have shape ({n},), got {self.charges.shape}")
            if not np.isfinite(self.charges).all():
                raise ValueError(f"{source}: NaN or inf partial charges")
        if self.bonds.ndim != 2 or self.bonds.shape[1] != 2:
            raise ValueError(f"{source}: bonds must have shape (B, 2), got {self.bonds.shape}")
        if self.bonds.size and (self.bonds.min() < 0 or self.bonds.max() >= n):
            raise ValueError(f"{source}: bond indices must lie in [0, {n})")
        bad = ~np.isfinite(p).reshape(p.shape[0], -1).all(1)
        if bad.any():
            raise ValueError(f"{source}: NaN or inf positions in frame {int(np.argmax(bad))}")
        return self

    def save(self, path_npz: PathLike) -> tuple[Path, Path]:
        """Write ``path.npz`` (arrays) and ``path.json`` (metadata) atomically."""
        path_npz = Path(path_npz)
        path_npz.parent.mkdir(parents=True, exist_ok=True)
        path_json = path_npz.with_suffix(".json")
        arrays = {
            "positions": self.positions.astype(np.float32),
            "bonds": self.bonds.astype(np.int64),
            "names": self.names.astype(str),
            "elements": self.elements.astype(str),
            "masses": self.masses.astype(np.float64),
            "atom_indices": self.atom_indices.astype(np.int64),
        }
        if self.charges is not None:
            arrays["charges"] = self.charges.astype(np.float64)
        from ..io import atomic_write, atomic_write_text

        with atomic_write(path_npz, "wb") as fh:  # unique temp name, fsync, rename
            np.savez(fh, **arrays)
        meta = dict(self.meta, cache_version=_CACHE_VERSION, n_frames=self.n_frames, n_atoms=self.n_atoms,
                    n_bonds=len(self.bonds))
        atomic_write_text(path_json, json.dumps(meta, indent=2, sort_keys=True))
        return path_npz, path_json


def load_frames(path_npz: PathLike) -> ProteinFrames:
    """Read frames written by :meth:`ProteinFrames.save` (``allow_pickle=False``).

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from eghn.data.protein import ProteinFrames, load_frames
        >>> frames = ProteinFrames(positions=np.zeros((4, 2, 3), np.float32), bonds=np.array([[0, 1]]),
        ...                        names=np.array(["C", "N"]), elements=np.array(["C", "N"]),
        ...                        masses=np.array([12.0, 14.0]), atom_indices=np.arange(2))
        >>> npz, _ = frames.save(tempfile.mkdtemp() + "/frames.npz")
        >>> back = load_frames(npz)
        >>> back.n_frames, back.names.tolist(), back.bonds.tolist()
        (4, ['C', 'N'], [[0, 1]])
    """
    path_npz = Path(path_npz)
    path_json = path_npz.with_suffix(".json")
    for p in (path_npz, path_json):
        if not p.is_file():
            raise FileNotFoundError(f"protein cache file not found: {str(p)!r}")
    try:
        meta = json.loads(path_json.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read cache metadata {str(path_json)!r}: {err}") from err
    if not isinstance(meta, dict) or meta.get("cache_version") not in _READABLE_CACHE_VERSIONS:
        raise ValueError(f"{str(path_json)!r} is not an eghn protein cache of version "
                         f"{' or '.join(map(str, _READABLE_CACHE_VERSIONS))}")
    try:
        with np.load(path_npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("positions", "bonds", "names", "elements", "masses", "atom_indices")}
            arrays["charges"] = z["charges"] if "charges" in z.files else None
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"cannot read protein cache {str(path_npz)!r}: {err}") from err
    frames = ProteinFrames(meta=meta, **arrays).validate(str(path_npz))
    if (frames.n_frames, frames.n_atoms) != (meta.get("n_frames"), meta.get("n_atoms")):
        raise ValueError(f"{str(path_npz)!r} does not match its metadata {str(path_json)!r}")
    return frames


def extract_frames(universe, selection: str = "backbone", *, guess_bonds: bool = True,
                   progress: bool = False, meta: dict[str, Any] | None = None) -> ProteinFrames:
    """Read every frame of ``universe`` for the heavy atoms of ``selection``.

    Shapes:
        - returns positions :math:`(T, N, 3)` with ``N`` selected heavy atoms

    Example:
        >>> import MDAnalysis as mda
        >>> from eghn.data.protein import embedded_adk_files, extract_frames
        >>> frames = extract_frames(mda.Universe(*embedded_adk_files()), "name CA")
        >>> frames.positions.shape, frames.bonds.shape
        ((98, 214, 3), (0, 2))
    """
    atoms = select_heavy_atoms(universe, selection)
    traj = universe.trajectory
    traj[0]
    bonds, guessed = _bonds_among(atoms, guess_bonds)
    positions = np.empty((traj.n_frames, atoms.n_atoms, 3), dtype=np.float32)
    iterator = traj
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(traj, total=traj.n_frames, desc="reading frames", unit="frame")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for k, _ts in enumerate(iterator):
            positions[k] = atoms.positions
    traj[0]
    info = {
        "selection": selection,
        "n_frames_source": int(traj.n_frames),
        "dt_ps": float(traj.dt) if traj.dt is not None else None,
        "bonds_guessed": guessed,
        "n_atoms_universe": int(universe.atoms.n_atoms),
    }
    info.update(meta or {})
    if hasattr(atoms, "masses"):
        masses = np.asarray(atoms.masses, dtype=np.float64)
    else:
        masses = np.zeros(atoms.n_atoms)
    charges = np.asarray(atoms.charges, dtype=np.float64) if hasattr(atoms, "charges") else None
    frames = ProteinFrames(
        positions=positions, bonds=bonds, names=np.asarray(atoms.names, dtype=str),
        elements=_elements(atoms), masses=masses, atom_indices=np.asarray(atoms.indices, dtype=np.int64),
        meta=info, charges=charges,
    )
    return frames.validate(f"trajectory of {universe}")


def _cache_key(topology: str, trajectory: list[str], selection: str, guess_bonds: bool) -> str:
    def stat(p: str) -> dict[str, Any]:
        s = os.stat(p)
        return {"path": str(Path(p).resolve()), "size": s.st_size, "mtime_ns": s.st_mtime_ns}

    payload = {
        "version": _CACHE_VERSION,
        "topology": stat(topology),
        "trajectory": [stat(t) for t in trajectory],
        "selection": selection,
        "guess_bonds": guess_bonds,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _load_or_extract(
    topology: PathLike, trajectory: list[str], selection: str, *, guess_bonds: bool,
    cache_dir: PathLike | None, use_cache: bool, progress: bool,
) -> tuple[ProteinFrames, Path | None]:
    topology = os.fspath(topology)
    _check_files_exist(topology, trajectory)
    path = None
    if use_cache:
        key = _cache_key(topology, trajectory, selection, guess_bonds)
        folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        path = folder / f"{Path(topology).stem}-{key}.npz"
        if path.is_file() and path.with_suffix(".json").is_file():
            try:
                return load_frames(path), path
            except ValueError as err:
                warnings.warn(f"ignoring unreadable protein cache ({err}); re-reading the trajectory",
                              stacklevel=3)
    universe = _open_universe(topology, trajectory)
    meta = {
        "topology": str(Path(topology).resolve()),
        "trajectory": [str(Path(t).resolve()) for t in trajectory],
    }
    frames = extract_frames(universe, selection, guess_bonds=guess_bonds, progress=progress, meta=meta)
    if path is not None:
        frames.save(path)
    return frames, path


# ---------------------------------------------------------------------------- graph pieces
def cutoff_edges(pos: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs ``(i, j)``, ``i != j``, with ``|x_i - x_j| <= cutoff`` (grid search).

    Distances are evaluated in float64 from the given coordinates; the grid search runs with a
    slightly larger radius so that no pair at the boundary is lost to rounding.

    Shapes:
        - pos: :math:`(N, 3)`
        - returns edge_index :math:`(2, E)` int64 (row 0 receiver, sorted by (receiver,
          sender)) and squared distances :math:`(E,)` float64

    Example:
        >>> import numpy as np
        >>> from eghn.data.protein import cutoff_edges
        >>> pos = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
        >>> edge_index, sq = cutoff_edges(pos, cutoff=1.5)
        >>> edge_index.tolist(), sq.tolist()
        ([[0, 1], [1, 0]], [1.0, 1.0])
    """
    from MDAnalysis.lib.distances import self_capped_distance

    pos = np.ascontiguousarray(pos, dtype=np.float32)
    if pos.shape[0] < 2:
        return np.empty((2, 0), dtype=np.int64), np.empty(0)
    pairs = self_capped_distance(pos, max_cutoff=float(cutoff) * (1 + 1e-5) + 1e-6, return_distances=False)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    i, j = pairs[:, 0], pairs[:, 1]
    p64 = pos.astype(np.float64)
    diff = p64[i] - p64[j]
    sq = np.einsum("ij,ij->i", diff, diff)
    keep = (sq <= float(cutoff) ** 2) & (i != j)
    i, j, sq = i[keep], j[keep], sq[keep]
    recv, send = np.concatenate([i, j]), np.concatenate([j, i])
    order = np.argsort(recv * pos.shape[0] + send)  # keys are unique: any sort is deterministic
    return np.stack([recv[order], send[order]]), np.concatenate([sq, sq])[order]


def chronological_split(
    n_pairs: int, split_sizes: Sequence[float] | Sequence[int], gap: int = 0
) -> dict[str, range]:
    """Start-frame ranges of the train / val / test blocks, in this order in time.

    ``split_sizes`` holds three fractions (floats, summing to at most 1, of the pairs left
    after the gaps) or three counts (ints). ``gap`` start frames are skipped between blocks.

    Example:
        >>> chronological_split(83, (2481 / 4186, 827 / 4186, 878 / 4186))
        {'train': range(0, 49), 'val': range(49, 65), 'test': range(65, 83)}
    """
    sizes = list(split_sizes)
    if len(sizes) != 3:
        raise ValueError(f"split_sizes must have three entries (train, val, test), got {split_sizes!r}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    available = n_pairs - 2 * gap
    is_int = [isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sizes]
    if all(is_int):
        counts = [int(s) for s in sizes]
        if min(counts) < 0:
            raise ValueError(f"split counts must be >= 0, got {counts}")
        if sum(counts) > available:
            raise ValueError(
                f"the split asks for {sum(counts)} samples {tuple(counts)} (plus 2 x gap = {2 * gap} "
                f"skipped) but the trajectory only has {n_pairs} frame pairs"
            )
    elif not any(is_int):
        fracs = [float(s) for s in sizes]
        if min(fracs) < 0 or not np.isfinite(fracs).all() or sum(fracs) > 1 + 1e-9:
            raise ValueError(f"split fractions must be >= 0 and sum to at most 1, got {fracs}")
        if available < 0:
            raise ValueError(f"gap={gap} leaves no samples among {n_pairs} frame pairs")
        counts = [int(np.floor(f * available + 1e-9)) for f in fracs]
        if abs(sum(fracs) - 1) < 1e-6:
            counts[2] = available - counts[0] - counts[1]
    else:
        raise ValueError(
            f"split_sizes must be all fractions (float) or all counts (int), got {split_sizes!r}"
        )
    out, start = {}, 0
    for name, c in zip(_SPLITS, counts):
        out[name] = range(start, start + c)
        start += c + gap
    return out


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed proper rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# ---------------------------------------------------------------------------- the dataset
class ProteinMDDataset:
    """Graphs ``(x_t, v_t) -> x_{t+delta}`` from a protein MD trajectory (paper Section 4.3).

    Give either ``topology`` (+ ``trajectory``; one path or a list, read as one chained
    trajectory), or an MDAnalysis ``universe`` (read into memory; not cached on disk), or a
    ``cache_file`` written earlier (:meth:`from_cache`), or nothing: the embedded AdK trajectory
    of MDAnalysisTests. See the module docstring for the exact definitions.

    Args:
        topology, trajectory: files MDAnalysis can read.
        universe: an ``MDAnalysis.Universe`` instead of files.
        cache_file: a cache ``.npz`` written earlier (the trajectory is then not needed).
        source: a named trajectory instead of files: ``"adk-embedded"`` (the default when
            nothing is given: MDAnalysisTests' adk.psf + adk_dims.dcd, 98 frames) or
            ``"adk-equilibrium"`` (the paper's AdK equilibrium trajectory, downloaded once with
            MDAnalysisData into ``data_home``). ``""`` means no named trajectory, as ``None``:
            the value that clears a configuration's ``source`` on the command line
            (``--set data.source='""'``, then ``data.topology`` and ``data.trajectory``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        selection: MDAnalysis selection string (default ``"backbone"``; with ``cache_file``,
            the cached one); hydrogens are always removed from it.
        delta: frames between input and target (paper: 15).
        cutoff: radius of :math:`\\mathcal{A}_{global}` in Å (paper: 10).
        split_sizes: three fractions or three counts (see :func:`chronological_split`).
        gap: start frames left out between consecutive blocks (e.g. ``gap=delta`` keeps the
            targets of one block out of the inputs of the next).
        node_features: ``"name"``, ``"element"``, ``"mass"`` or ``"released"`` (speed and
            partial charge, as the released code; needs charges in the topology).
        edge_features: ``"sqdist"``, ``"distance"``, ``"none"`` or ``"released"`` (global
            ``[d, d^2]`` in Å, local ``[first-frame bond length, d^2]``, as the released code).
        rotate, translate: random rigid transform of every sample (test-time rotation).
        translate_scale: standard deviation :math:`\\sigma` (Å) of the random translation.
        seed: seed of the random transforms.
        guess_bonds: guess bonds with MDAnalysis when the topology has none.
        cache_dir: where preprocessed frames go (default ``$EGHN_CACHE_DIR/protein`` or
            ``~/.cache/eghn/protein``); ``use_cache=False`` reads the trajectory every time.
        progress: show a progress bar while reading the trajectory.
        dtype: floating-point dtype of the tensors.

    Shapes (one sample with ``N`` atoms):
        - pos, vel, target: :math:`(N, 3)`; h: :math:`(N, \\text{node\\_dim})`
        - edge_index: :math:`(2, E_t)`, edge_attr: :math:`(E_t, \\text{edge\\_dim})` or None
        - local_edge_index: :math:`(2, 2B)`, local_edge_attr: None (:math:`(2B, 2)` with
          ``edge_features="released"``)

    Example:
        >>> ds = ProteinMDDataset(split="train", use_cache=False)
        >>> len(ds), ds.num_atoms, ds.node_dim, ds.edge_dim, ds.local_edge_dim
        (49, 855, 4, 1, 0)
        >>> tuple(ds[0].pos.shape), tuple(ds[0].local_edge_index.shape)
        ((855, 3), (2, 1708))
    """

    def __init__(
        self,
        topology: PathLike | None = None,
        trajectory: PathLike | Sequence[PathLike] | None = None,
        *,
        universe=None,
        cache_file: PathLike | None = None,
        source: str | None = None,
        data_home: PathLike | None = None,
        split: str = "train",
        selection: str | None = None,
        delta: int = 15,
        cutoff: float = 10.0,
        split_sizes: Sequence[float] | Sequence[int] = PAPER_SPLIT_FRACTIONS,
        gap: int = 0,
        node_features: str = "name",
        edge_features: str = "sqdist",
        rotate: bool = False,
        translate: bool = False,
        translate_scale: float = 10.0,
        seed: int = 0,
        guess_bonds: bool = True,
        cache_dir: PathLike | None = None,
        use_cache: bool = True,
        progress: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if isinstance(delta, bool) or not isinstance(delta, (int, np.integer)) or delta < 1:
            raise ValueError(f"delta must be a positive integer number of frames, got {delta!r}")
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive distance in Å, got {cutoff!r}")
        if node_features not in _NODE_FEATURES:
            raise ValueError(f"node_features must be one of {_NODE_FEATURES}, got {node_features!r}")
        if edge_features not in _EDGE_FEATURES:
            raise ValueError(f"edge_features must be one of {_EDGE_FEATURES}, got {edge_features!r}")
        if not (np.isfinite(translate_scale) and translate_scale >= 0):
            raise ValueError(f"translate_scale must be >= 0, got {translate_scale!r}")
        if source == "":  # cleared (e.g. --set data.source='""' over a shipped config)
            source = None
        given = sum(x is not None for x in (topology, universe, cache_file, source))
        if given > 1:
            raise ValueError("give only one of topology(+trajectory), universe, cache_file, source "
                             "(a configuration that names a source: clear it with --set data.source='\"\"')")
        if source is not None and source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
        if trajectory is not None and topology is None:
            raise ValueError("a trajectory needs its topology file too")

        self.cache_path: Path | None = None
        if cache_file is not None:
            frames = load_frames(cache_file)
            self.cache_path = Path(cache_file)
            cached = frames.meta.get("selection")
            if selection is not None and selection != cached:
                raise ValueError(
                    f"the cache {os.fspath(cache_file)!r} holds selection {cached!r}, not {selection!r}"
                )
            selection = cached
        elif universe is not None:
            selection = "backbone" if selection is None else selection
            frames = extract_frames(universe, selection, guess_bonds=guess_bonds, progress=progress)
        else:
            if source == "adk-equilibrium":
                topology, trajectory = fetch_adk_equilibrium(data_home)
            elif topology is None:
                topology, trajectory = embedded_adk_files()
            selection = "backbone" if selection is None else selection
            frames, self.cache_path = _load_or_extract(
                topology, _as_file_list(trajectory), selection, guess_bonds=guess_bonds,
                cache_dir=cache_dir, use_cache=use_cache, progress=progress,
            )
        self.frames = frames
        self.split = split
        self.selection = selection
        self.delta = int(delta)
        self.cutoff = float(cutoff)
        self.node_features = node_features
        self.edge_features = edge_features
        self.rotate, self.translate = bool(rotate), bool(translate)
        self.translate_scale = float(translate_scale)
        self.seed = int(seed)
        self.dtype = dtype

        n_frames = frames.n_frames
        if n_frames <= self.delta:
            raise ValueError(
                f"the trajectory has {n_frames} frames, too short for a frame gap of delta={self.delta} "
                f"(needs at least {self.delta + 1} frames)"
            )
        self.n_pairs = n_frames - self.delta
        self.split_ranges = chronological_split(self.n_pairs, split_sizes, gap)
        self.starts = self.split_ranges[split]
        if len(self.starts) == 0:
            raise ValueError(
                f"split {split!r} is empty: {self.n_pairs} frame pairs cut by split_sizes="
                f"{tuple(split_sizes)} give {[len(r) for r in self.split_ranges.values()]} samples"
            )

        self.feature_names, h = self._node_features(frames, node_features)
        self.h = torch.from_numpy(h).to(dtype)
        bonds = torch.from_numpy(frames.bonds.astype(np.int64)).T
        self.local_edge_index = torch.cat([bonds, bonds.flip(0)], 1).contiguous()
        self.bond_length0: torch.Tensor | None = None
        # power of length of each feature column (see eghn.data.units); the default features
        # are dimensionless (one-hot types, masses, distances relative to the cutoff)
        self.feature_length_powers: dict[str, tuple[int, ...]] = {}
        if node_features == "released":
            self.feature_length_powers["h"] = (1, 0)
        if edge_features == "released":
            first = frames.positions[0].astype(np.float64)
            li = self.local_edge_index.numpy()
            length0 = np.linalg.norm(first[li[0]] - first[li[1]], axis=1)
            self.bond_length0 = torch.from_numpy(length0).to(dtype).unsqueeze(1)
            self.feature_length_powers.update(edge_attr=(1, 2), local_edge_attr=(1, 2))

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_cache(cls, cache_file: PathLike, **kwargs) -> ProteinMDDataset:
        """Dataset from a cache ``.npz`` (+ ``.json``) alone; the trajectory is not needed."""
        return cls(cache_file=cache_file, **kwargs)

    @classmethod
    def adk_equilibrium(cls, data_home: PathLike | None = None, **kwargs) -> ProteinMDDataset:
        """The paper's dataset: the AdK equilibrium trajectory (MDAnalysisData)."""
        return cls(source="adk-equilibrium", data_home=data_home, **kwargs)

    @staticmethod
    def _node_features(frames: ProteinFrames, kind: str) -> tuple[list[str], np.ndarray]:
        """Names and values of the per-atom node features; for ``"released"`` the charge column
        only (the speed column depends on the sample and is put in front in ``__getitem__``)."""
        if kind == "released":
            q = frames.charges
            if q is None:
                raise ValueError("node_features='released' needs the topology's partial charges, and this "
                                 "topology (or cache) has none; use node_features='name', 'element' or 'mass'")
            if not q.max() > 0:
                raise ValueError("node_features='released' divides the partial charges by their largest "
                                 f"value, which is {q.max():g} for this selection (must be positive)")
            return ["|v|", "q/max q"], (q / q.max()).reshape(-1, 1)
        if kind == "mass":
            if not (frames.masses > 0).all():
                raise ValueError("node_features='mass' needs a positive mass for every atom; the topology "
                                 "has none for some atoms (use node_features='name' or 'element')")
            return ["mass/12"], (frames.masses / 12.0).reshape(-1, 1)
        labels = frames.names if kind == "name" else frames.elements
        vocab, inverse = np.unique(labels, return_inverse=True)
        h = np.zeros((len(labels), len(vocab)))
        h[np.arange(len(labels)), inverse.reshape(-1)] = 1.0
        return [str(v) for v in vocab], h

    # ---------------------------------------------------------------- interface
    @property
    def num_atoms(self) -> int:
        return self.frames.n_atoms

    @property
    def node_dim(self) -> int:
        return int(self.h.shape[1]) + (self.node_features == "released")

    @property
    def edge_dim(self) -> int:
        return {"none": 0, "released": 2}.get(self.edge_features, 1)

    @property
    def local_edge_dim(self) -> int:
        return 2 if self.edge_features == "released" else 0

    def __len__(self) -> int:
        return len(self.starts)

    def frame_index(self, i: int) -> int:
        """Trajectory frame ``t`` of the input of sample ``i``."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for the {n}-sample {self.split!r} split")
        return self.starts[i % n]

    def transform_for(self, i: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Rotation ``(3, 3)`` and translation ``(3,)`` applied to sample ``i`` (None when off)."""
        if not (self.rotate or self.translate):
            return None, None
        rng = np.random.default_rng([self.seed, _SPLITS.index(self.split), i % len(self)])
        rot = _random_rotation(rng)
        shift = rng.normal(scale=self.translate_scale, size=3)
        return (rot if self.rotate else None), (shift if self.translate else None)

    def __getitem__(self, i: int) -> Graph:
        t = self.frame_index(int(i))
        x = self.frames.positions[t]
        edge_index, sq = cutoff_edges(x, self.cutoff)
        if self.edge_features == "sqdist":
            edge_attr = torch.from_numpy(sq / self.cutoff**2).to(self.dtype).unsqueeze(1)
        elif self.edge_features == "distance":
            edge_attr = torch.from_numpy(np.sqrt(sq) / self.cutoff).to(self.dtype).unsqueeze(1)
        elif self.edge_features == "released":
            edge_attr = torch.from_numpy(np.stack([np.sqrt(sq), sq], 1)).to(self.dtype)
        else:
            edge_attr = None
        local_edge_attr = None
        if self.bond_length0 is not None:
            li = self.local_edge_index.numpy()
            d = x[li[0]].astype(np.float64) - x[li[1]]
            local_sq = torch.from_numpy((d * d).sum(1)).to(self.dtype).unsqueeze(1)
            local_edge_attr = torch.cat([self.bond_length0, local_sq], 1)
        vel = self.frames.positions[t + 1] - x
        h = self.h
        if self.node_features == "released":  # the speed is invariant: taken before any transform
            speed = np.linalg.norm(vel.astype(np.float64), axis=1, keepdims=True)
            h = torch.cat([torch.from_numpy(speed).to(self.dtype), self.h], 1)
        target = self.frames.positions[t + self.delta]
        rot, shift = self.transform_for(int(i))
        if rot is not None:  # x -> x Q^T (+ t), v -> v Q^T, in float64 then cast
            x, vel, target = (a.astype(np.float64) @ rot.T for a in (x, vel, target))
        if shift is not None:
            x, target = x + shift, target + shift

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.dtype)

        return Graph(
            pos=tensor(x), h=h, vel=tensor(vel), edge_index=torch.from_numpy(edge_index),
            edge_attr=edge_attr, local_edge_index=self.local_edge_index, local_edge_attr=local_edge_attr,
            target=tensor(target),
        )

    def collate(self, indices: Sequence[int]) -> Graph:
        """A batched :class:`~eghn.data.Graph` of the samples ``indices``."""
        return collate([self[int(i)] for i in indices])

    def __repr__(self) -> str:
        return (f"ProteinMDDataset(split={self.split!r}, samples={len(self)}, atoms={self.num_atoms}, "
                f"selection={self.selection!r}, delta={self.delta}, cutoff={self.cutoff})")


# ---------------------------------------------------------------------------- command line
def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eghn data protein``: read a trajectory once and cache its frames under ``--out``.

    Example:
        >>> import argparse
        >>> from eghn.data.protein import register_cli
        >>> parser = argparse.ArgumentParser(prog="eghn data")
        >>> _ = register_cli(parser.add_subparsers())
        >>> args = parser.parse_args(["protein", "--selection", "name CA"])
        >>> args.selection, args.adk_equilibrium
        ('name CA', False)
    """
    p = subparsers.add_parser(
        "protein",
        help="preprocess a protein MD trajectory (default: embedded AdK) into a cache",
        description="Read the heavy atoms of a selection from an MD trajectory and cache them "
                    "(.npz + .json) for ProteinMDDataset.",
    )
    p.add_argument("--topology", help="topology file (default: MDAnalysisTests adk.psf)")
    p.add_argument("--trajectory", nargs="+", help="trajectory file(s), chained in order")
    p.add_argument("--adk-equilibrium", action="store_true",
                   help="download the paper's AdK trajectory with MDAnalysisData")
    p.add_argument("--data-home", help="MDAnalysisData download folder (with --adk-equilibrium)")
    p.add_argument("--selection", default="backbone", help="MDAnalysis selection (hydrogens removed)")
    p.add_argument("--no-guess-bonds", action="store_true", help="do not guess missing bonds")
    p.add_argument("--out", help="cache folder (default: $EGHN_CACHE_DIR/protein or ~/.cache/eghn/protein)")
    p.set_defaults(func=_cli_main)
    return p


def _cli_main(args: argparse.Namespace) -> int:
    if args.adk_equilibrium:
        if args.topology or args.trajectory:
            raise SystemExit("--adk-equilibrium cannot be combined with --topology/--trajectory")
        topology, trajectory = fetch_adk_equilibrium(args.data_home)
        trajectory = [trajectory]
    elif args.topology:
        topology, trajectory = args.topology, list(args.trajectory or [])
    else:
        if args.trajectory:
            raise SystemExit("--trajectory needs --topology")
        topology, dcd = embedded_adk_files()
        trajectory = [dcd]
    try:
        frames, path = _load_or_extract(topology, trajectory, args.selection,
                                        guess_bonds=not args.no_guess_bonds, cache_dir=args.out,
                                        use_cache=True, progress=True)
    except ValueError as err:
        raise SystemExit(f"eghn data protein: {err}") from err
    print(f"{frames.n_frames} frames, {frames.n_atoms} atoms ({args.selection!r}, no hydrogens), "
          f"{len(frames.bonds)} bonds{' (guessed)' if frames.meta.get('bonds_guessed') else ''}")
    print(f"cache: {path}")
    return 0
