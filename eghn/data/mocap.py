"""CMU motion capture for the EGHN motion experiments (paper Section 4.2).

Two systems, both with the 31-node CMU skeleton (root + 30 bones, see
:mod:`eghn.data.asf_amc`):

* ``subject="walk"``: CMU Subject 35, 23 walking trials (35_01-35_16, 35_28-35_34). The raw
  ASF/AMC files are fetched from ``mocap.cs.cmu.edu`` by :func:`download` (sha256-checked
  against :data:`WALK_SHA256`) and turned into ``cmu35_walk.npz`` by :func:`preprocess`.
* ``subject="run"``: CMU Subject 9, 11 running trials, read from a preprocessed
  ``cmu09_run.npz`` (keys ``trial_00`` ... ``trial_10``, each ``(T, 31, 3)``, and ``edges``
  ``(30, 2)``). To build it from raw files, fetch ``09.asf`` and ``09_01.amc`` ...
  ``09_11.amc`` (``eghn data mocap --download --subject run --allow-unverified``: no checksums
  are shipped for them) or place them in ``<out>/cmu09_run/`` and run
  ``eghn data mocap --preprocess --subject run``. Trials are then numbered in sorted order
  (trial id 0 = 09_01); the npz used by the GMN/EGHN papers numbered them in an unpublished
  order (its ``trial_06`` is 09_01), so the split is equivalent in protocol but the trial
  assignment may differ.

Preprocessing (the GMN/EGHN protocol): forward kinematics in raw ASF units (no centring or
scaling), trial 35_10 drops its first 6 frames. The :class:`MocapDataset` then uses
velocities ``v[t] = x[t+1] - x[t]`` (dropping the last frame) and samples
``(x[t], v[t]) -> x[t + 30]`` at start frames ``t`` from a split regenerated exactly as the
papers did (:func:`make_split`). Graphs: node feature ``h_i = y_i / 10`` (the height, so
models are equivariant about the vertical axis only); :math:`\\mathcal{A}_{global}` = all node
pairs at most two bones apart, edge feature = one-hot hop count ``[hop == 1, hop == 2]``;
:math:`\\mathcal{A}_{local}` = the 30 bones, both directions, no features.

Data are looked up in ``data_dir`` when given, else in ``<root>/mocap`` over
:func:`eghn.data.paths.data_roots` (``$EGHN_DATA_DIR``, then the user cache); a preprocessed
``.npz`` is preferred, else raw ASF/AMC files are preprocessed once into the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..io import TMP_PREFIX, atomic_write, atomic_write_text, clean_orphans
from .asf_amc import forward_kinematics, read_amc, read_asf
from .graph import Graph
from .paths import cache_dir as default_cache_dir
from .paths import data_roots

__all__ = [
    "CMU_URL",
    "SKELETON_EDGES",
    "SUBJECTS",
    "WALK_SHA256",
    "ChecksumError",
    "MocapDataset",
    "MocapSubject",
    "download",
    "load_npz",
    "make_split",
    "preprocess",
    "register_cli",
    "skeleton_graph",
]

CMU_URL = "https://mocap.cs.cmu.edu/subjects/{subject}/{name}"
"""Per-file URL of the CMU Graphics Lab Motion Capture Database."""

#: ``child -> parent`` node pairs of the 31-node CMU skeleton (depth-first over the ASF hierarchy).
SKELETON_EDGES = np.array(
    [[1, 0], [2, 1], [3, 2], [4, 3], [5, 4], [6, 0], [7, 6], [8, 7], [9, 8], [10, 9], [11, 0],
     [12, 11], [13, 12], [14, 13], [15, 14], [16, 15], [17, 13], [18, 17], [19, 18], [20, 19],
     [21, 20], [22, 21], [23, 20], [24, 13], [25, 24], [26, 25], [27, 26], [28, 27], [29, 28],
     [30, 27]], dtype=np.int64)

#: sha256 of the raw Subject 35 files (the walking trials and the skeleton).
WALK_SHA256 = {
    "35.asf": "9b4888836cbd13cdab14a86c53a6b7765ccae48ddc7075d8c5e03ac34bc08364",
    "35_01.amc": "efe882ca211915da0c70d7a1ac565660c75e373171f64e199ede283b921850d3",
    "35_02.amc": "d6fefd28756a979418b7bc09b6dc1020f3dc372f4c35e382d55026c74941e473",
    "35_03.amc": "5f7fc7ede6fdd70ac312f0449e49cf4c8d0878ad31246b9e455a0420450d1761",
    "35_04.amc": "c0ea194c1c7cc1807ff6c94212dd702777f8c96fdbc59656c5df7eded3009f1c",
    "35_05.amc": "8421013452f0e904c8a31778a690cc76c4aa50a304ea927e7381d79c5958d435",
    "35_06.amc": "b13b76a376129b460eae3d62b79d06a704663eec34123c9a61e0dad2775aa910",
    "35_07.amc": "315f9ee6eefa2b54c380b1992034ab825f58f799084ed7680a4e2213e3846823",
    "35_08.amc": "29fd9b64748295a5263f3fc69fb9c1c09ad828027569a79c39f0ef080c37d05e",
    "35_09.amc": "43d92cd4d4397f996a40037955597334b04b6c09c0ad9288ef12f7ebb3bac5fc",
    "35_10.amc": "d2948eb337fc2c395616881ad4d612780242e2923558774893b3db43a3ea8d62",
    "35_11.amc": "15541226c2aae03a287f39ad70a21480df0e523f2c040838e76bb12b6e539349",
    "35_12.amc": "eb6d224e450d0c4e4ec502edd7b671fa0f5119305b2c0105575cdeb48d53d84e",
    "35_13.amc": "fe5572cce38f4bd4046b0f5d72741c351a8cfa7cf88b428feb85c56dc1130587",
    "35_14.amc": "f3c584811a8370d8d627f6354706402931f7a599f3620a5abb26305aefd77432",
    "35_15.amc": "cb50bf7c31fdfb4a0903ab64d91807aff775a483a028bdb0773af7752354d9fa",
    "35_16.amc": "240e8d077d3be8e340bee6c465c59ed7320e53e4e529fd674fe7335e6d2c52af",
    "35_28.amc": "e91c989fc8adbb2eff59e3e86f37ef114e82591e5961f22ea1eb0b9682a96ca6",
    "35_29.amc": "48eb5a400085c6477698038767fa907d1f67b7ddd4e51c05366dae15cccd6ce5",
    "35_30.amc": "6c34a093f1df7e5255352972e12e2648a7e50cc9261fe73183e9e77bd0ab326e",
    "35_31.amc": "2b412cbd23c326d36f86ad86d41f500f4b3808f32fedad1b03b4652ea25efb80",
    "35_32.amc": "6939e377574486c7ca2939f3f424fcf4cfac5f6ad28eeb71933e52b052bb19bc",
    "35_33.amc": "d53fbc9c99944ad9cf36b7d6fafea029c7d7fa3b71fc70492248e7494eabaab1",
    "35_34.amc": "484ee3fe1ca9a984c4363484972d3114c675a9207a5119aeebd6d7235038a421",
}


@dataclass(frozen=True)
class MocapSubject:
    """Everything that defines one motion-capture system and its paper protocol.

    Attributes:
        key: ``"walk"`` or ``"run"``.
        subject: CMU subject number as in the file names (``"35"``).
        trials: AMC trial names; trial id ``k`` of the split is ``trials[k]``.
        npz_name / raw_name: file name of the preprocessed npz / folder name of the raw files.
        drop_first: frames dropped at the start of some trials.
        split_trials: trial ids of each partition in the order the split is drawn.
        interval / per_trial: start frames are ``per_trial`` distinct draws from
            ``range(interval)`` per trial.
        max_samples: the paper's requested samples per partition.
        sha256: checksums of the raw files (empty when none are shipped).

    Example:
        >>> from eghn.data.mocap import SUBJECTS
        >>> walk = SUBJECTS["walk"]
        >>> walk.subject, len(walk.trials), walk.files[:2]
        ('35', 23, ['35.asf', '35_01.amc'])
    """

    key: str
    subject: str
    trials: tuple[str, ...]
    npz_name: str
    raw_name: str
    split_trials: dict[str, tuple[int, ...]]
    interval: int
    per_trial: int
    max_samples: dict[str, int]
    drop_first: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        """Raw file names: the ASF skeleton, then the AMC trials."""
        return [f"{self.subject}.asf"] + [f"{t}.amc" for t in self.trials]


SUBJECTS: dict[str, MocapSubject] = {
    "walk": MocapSubject(
        key="walk", subject="35",
        trials=tuple(f"35_{i:02d}" for i in (*range(1, 17), *range(28, 35))),
        npz_name="cmu35_walk.npz", raw_name="cmu35_walk",
        split_trials={"train": (20, 1, 17, 13, 14, 9, 4, 2, 7, 5, 16), "val": (3, 8, 11, 12, 15, 18),
                      "test": (6, 19, 21, 0, 22, 10)},
        interval=300, per_trial=100, max_samples={"train": 200, "val": 600, "test": 600},
        drop_first={"35_10": 6}, sha256=WALK_SHA256,
    ),
    "run": MocapSubject(
        key="run", subject="09", trials=tuple(f"09_{i:02d}" for i in range(1, 12)),
        npz_name="cmu09_run.npz", raw_name="cmu09_run",
        split_trials={"train": (1, 2, 5, 6, 10), "val": (0, 4, 9), "test": (3, 7, 8)},
        interval=90, per_trial=80, max_samples={"train": 200, "val": 240, "test": 240},
    ),
}

_SPLITS = ("train", "val", "test")


class ChecksumError(ValueError):
    """A downloaded or cached file does not have the expected sha256.

    Example:
        >>> from eghn.data.mocap import ChecksumError
        >>> issubclass(ChecksumError, ValueError)
        True
    """


def _subject(subject: str) -> MocapSubject:
    if subject not in SUBJECTS:
        raise ValueError(f"unknown mocap subject {subject!r}; choose one of {sorted(SUBJECTS)}")
    return SUBJECTS[subject]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------- splits
def make_split(subject: str = "walk") -> dict[str, dict[int, list[int]]]:
    """Regenerate the GMN/EGHN split: ``{partition: {trial_id: [start frames]}}``.

    ``numpy.random.seed(100)``, then for each trial id (train, val, test, in the listed order)
    ``numpy.random.choice(numpy.arange(interval), per_trial, replace=False)``. A private
    ``RandomState(100)`` gives the same stream without touching numpy's global state.

    Example:
        >>> from eghn.data.mocap import make_split
        >>> split = make_split("run")
        >>> list(split["test"]), len(split["test"][3]), split["train"][1][:3]
        ([3, 7, 8], 80, [57, 61, 26])
    """
    spec = _subject(subject)
    rng = np.random.RandomState(100)
    out: dict[str, dict[int, list[int]]] = {}
    for part in _SPLITS:
        out[part] = {
            tid: rng.choice(np.arange(spec.interval), spec.per_trial, replace=False).tolist()
            for tid in spec.split_trials[part]
        }
    return out


# ---------------------------------------------------------------------------- download / preprocess
def _fetch_url(url: str, dest: Path) -> None:
    if not url.startswith("https://"):
        raise OSError(f"refusing to download over an unencrypted connection: {url}")
    with urllib.request.urlopen(url, timeout=120) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f)


def _recorded_sha256(folder: Path, spec: MocapSubject) -> dict[str, str]:
    """Checksums of the raw files: the shipped ones, else those recorded when they were fetched.

    The record is ``<raw_name>.sha256`` (``sha256sum`` format) inside the raw folder or beside
    it; an unreadable record is an error rather than no check.
    """
    if spec.sha256:
        return dict(spec.sha256)
    for cand in (folder / f"{spec.raw_name}.sha256", folder.parent / f"{spec.raw_name}.sha256"):
        if cand.is_file():
            out = {}
            for line in cand.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or len(parts[0]) != 64:
                    raise ChecksumError(f"{cand}: malformed checksum line {line!r}")
                out[parts[1].lstrip("*")] = parts[0]
            return out
    return {}


def download(subject: str = "walk", dest: str | os.PathLike | None = None, *,
             fetch: Callable[[str, Path], None] | None = None, allow_unverified: bool = False,
             progress: bool = True) -> Path:
    """Fetch the raw ASF/AMC files of a subject from the CMU database into ``dest/<raw_name>``.

    Files already present with the right checksum are kept. Every fetched file is checked
    against the shipped sha256 before it is moved into place. Downloads use https only and go
    to a temporary file with a unique name, renamed into place once complete.

    Args:
        subject: ``"walk"`` (Subject 35, checksums shipped) or ``"run"`` (Subject 9; needs
            ``allow_unverified=True`` since no checksums are shipped; the sha256 of what was
            fetched is written to ``<raw_name>.sha256`` next to the files).
        dest: folder receiving ``<raw_name>/`` (default: ``<user cache>/mocap``).
        fetch: ``fetch(url, path)`` downloads one file (default: :mod:`urllib`); tests pass a
            local copy function.

    Returns:
        the folder holding the raw files.

    Raises:
        ChecksumError: a fetched file does not match its checksum (it is deleted).

    Example:
        Needs the network, so the download is skipped when the docs are tested.

        >>> import tempfile
        >>> from eghn.data.mocap import download
        >>> raw = download("walk", tempfile.mkdtemp(), progress=False)  # doctest: +SKIP
        >>> raw.name, len(list(raw.glob("*.amc")))  # doctest: +SKIP
        ('cmu35_walk', 23)
        >>> download("run", tempfile.mkdtemp())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: no checksums are shipped for subject 'run' ...; pass allow_unverified=True ...
    """
    spec = _subject(subject)
    if not spec.sha256 and not allow_unverified:
        raise ValueError(f"no checksums are shipped for subject {subject!r} (CMU {spec.subject}); "
                         "pass allow_unverified=True (CLI: --allow-unverified) to fetch it anyway")
    fetch = fetch or _fetch_url
    folder = Path(dest) if dest is not None else default_cache_dir() / "mocap"
    folder = folder / spec.raw_name
    folder.mkdir(parents=True, exist_ok=True)
    clean_orphans(folder)
    recorded = _recorded_sha256(folder, spec)
    names = spec.files
    if progress:
        from tqdm.auto import tqdm

        names = tqdm(names, desc=f"CMU subject {spec.subject}", unit="file")
    digests = {}
    for name in names:
        target = folder / name
        expected = spec.sha256.get(name)
        if target.is_file() and _sha256(target) == (expected or recorded.get(name, _sha256(target))):
            digests[name] = _sha256(target)
            continue
        fd, part_name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{name}.", suffix=".part", dir=folder)
        os.close(fd)
        part = Path(part_name)
        url = CMU_URL.format(subject=spec.subject, name=name)
        try:
            try:
                fetch(url, part)
            except OSError as exc:
                raise OSError(f"cannot download {url}: {exc}") from exc
            got = _sha256(part)
            if expected is not None and got != expected:
                raise ChecksumError(f"{target}: sha256 {got} does not match the expected {expected} "
                                    f"(downloaded from {url})")
            with open(part, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(part, 0o644)
            os.replace(part, target)
        finally:
            if part.exists():
                part.unlink()
        digests[name] = got
    if not spec.sha256:
        atomic_write_text(folder / f"{spec.raw_name}.sha256", "".join(f"{d}  {n}\n" for n, d in digests.items()))
    return folder


def _unverified(spec: MocapSubject) -> str:
    return "" if spec.sha256 else " --allow-unverified"


def _raw_files(raw_dir: Path, spec: MocapSubject) -> list[Path]:
    files = [raw_dir / n for n in spec.files]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing raw CMU files for subject {spec.key!r}: {missing}; "
                                f"run `eghn data mocap --download --subject {spec.key}{_unverified(spec)}`")
    return files


def preprocess(raw_dir: str | os.PathLike, subject: str = "walk", out: str | os.PathLike | None = None,
               *, verify: bool = True) -> Path:
    """Forward kinematics of every trial of a subject, saved as one ``.npz``.

    The npz holds ``trial_XX`` ``(T, 31, 3)`` float64 arrays in raw ASF units (trial 35_10
    without its first 6 frames), ``edges`` ``(30, 2)`` child -> parent, ``trial_names``,
    ``node_names`` and ``raw_sha256`` (one digest of all raw files, to detect stale caches).

    Args:
        raw_dir: folder holding ``<subject>.asf`` and the ``.amc`` trials.
        out: output file (default: ``raw_dir/../<npz_name>``).
        verify: check the raw files against the shipped sha256 or, for a subject without
            shipped checksums, against those recorded by :func:`download`.

    Raises:
        FileNotFoundError: raw files missing (all are named).
        ChecksumError: a raw file differs from the shipped checksum.
        ValueError: the skeleton is not the 31-node CMU layout.

    Example:
        Needs the downloaded raw files of :func:`download`, so it is skipped when the docs are tested.

        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from eghn.data.mocap import download, preprocess
        >>> raw = download("walk", progress=False)  # doctest: +SKIP
        >>> npz = preprocess(raw, "walk", out=Path(tempfile.mkdtemp()) / "cmu35_walk.npz")  # doctest: +SKIP
        >>> with np.load(npz) as f:  # doctest: +SKIP
        ...     print(len(f["trial_names"]), f["trial_00"].shape[1:], f["edges"].shape)
        23 (31, 3) (30, 2)
    """
    spec = _subject(subject)
    raw_dir = Path(raw_dir)
    files = _raw_files(raw_dir, spec)
    digest = _raw_digest(files)
    if verify:
        expected_all = _recorded_sha256(raw_dir, spec)
        what = "shipped" if spec.sha256 else "recorded at download"
        for p in files:
            expected = expected_all.get(p.name)
            if expected is not None and _sha256(p) != expected:
                raise ChecksumError(f"{p}: sha256 does not match the {what} checksum {expected}")
    skeleton = read_asf(files[0])
    if len(skeleton.node_names) != 31 or not np.array_equal(skeleton.edges, SKELETON_EDGES):
        raise ValueError(f"{files[0]}: expected the 31-node CMU skeleton, got nodes {skeleton.node_names}")
    arrays: dict[str, np.ndarray] = {}
    for k, (trial, path) in enumerate(zip(spec.trials, files[1:])):
        x = forward_kinematics(skeleton, read_amc(path, skeleton))
        arrays[f"trial_{k:02d}"] = x[spec.drop_first.get(trial, 0):]
    arrays["edges"] = skeleton.edges
    arrays["trial_names"] = np.array(spec.trials)
    arrays["node_names"] = np.array(skeleton.node_names)
    arrays["raw_sha256"] = np.array(digest)
    out = Path(out) if out is not None else raw_dir.parent / spec.npz_name
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(out.parent)
    with atomic_write(out, "wb") as f:  # unique temp name, fsync, rename; mode 0o666 & ~umask
        np.savez(f, **arrays)
    return out


def _raw_digest(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(_sha256(p).encode())
    return h.hexdigest()


def load_npz(path: str | os.PathLike) -> tuple[list[np.ndarray], np.ndarray]:
    """Read a preprocessed mocap npz (``trial_00`` ... and ``edges``), validating it.

    Returns:
        ``(trials, edges)``: a list of ``(T_k, N, 3)`` float64 arrays and ``(N - 1, 2)`` int64.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from eghn.data.mocap import load_npz
        >>> path = tempfile.mkdtemp() + "/tiny.npz"
        >>> np.savez(path, trial_00=np.zeros((5, 3, 3)), trial_01=np.ones((4, 3, 3)), edges=np.array([[1, 0], [2, 1]]))
        >>> trials, edges = load_npz(path)
        >>> [t.shape for t in trials], edges.tolist()
        ([(5, 3, 3), (4, 3, 3)], [[1, 0], [2, 1]])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mocap npz not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        if "edges" not in keys:
            raise ValueError(f"{path}: no 'edges' array")
        edges = np.asarray(z["edges"])
        trials = []
        k = 0
        while f"trial_{k:02d}" in keys:
            trials.append(np.asarray(z[f"trial_{k:02d}"], dtype=np.float64))
            k += 1
    if not trials:
        raise ValueError(f"{path}: no 'trial_00' array")
    if edges.ndim != 2 or edges.shape[1] != 2 or not np.issubdtype(edges.dtype, np.integer):
        raise ValueError(f"{path}: 'edges' must be an integer (E, 2) array, got {edges.dtype} {edges.shape}")
    n = trials[0].shape[1] if trials[0].ndim == 3 else -1
    for k, x in enumerate(trials):
        if x.ndim != 3 or x.shape[1] != n or x.shape[2] != 3:
            raise ValueError(f"{path}: trial_{k:02d} must have shape (T, {n}, 3), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{path}: trial_{k:02d} contains NaN or inf")
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(f"{path}: 'edges' refers to nodes outside 0..{n - 1}")
    return trials, edges.astype(np.int64)


def _locate(spec: MocapSubject, data_dir: str | os.PathLike | None, cache: Path,
            download_missing: bool) -> Path:
    """Path of the preprocessed npz of a subject, preprocessing raw files on first use."""
    if data_dir is not None:
        base = Path(data_dir)
        if not base.is_dir():
            raise FileNotFoundError(f"mocap data_dir {base} is not a folder")
        dirs = [base, base / "mocap"]
    else:
        dirs = [d for r in data_roots() for d in (r / "mocap", r)] + [cache / "mocap"]
    for d in dirs:
        if (d / spec.npz_name).is_file():
            return d / spec.npz_name
    for d in dirs:
        raw = d / spec.raw_name
        if (raw / f"{spec.subject}.asf").is_file():
            files = _raw_files(raw, spec)
            cached = cache / "mocap" / spec.npz_name
            if cached.is_file():
                with np.load(cached, allow_pickle=False) as z:
                    stamp = str(z["raw_sha256"]) if "raw_sha256" in z.files else None
                if stamp == _raw_digest(files):
                    return cached
            return preprocess(raw, spec.key, cached)
    if download_missing:
        raw = download(spec.key, cache / "mocap")
        return preprocess(raw, spec.key, cache / "mocap" / spec.npz_name)
    searched = [str(d / spec.npz_name) for d in dirs] + [str(d / spec.raw_name) for d in dirs]
    raise FileNotFoundError(
        f"no CMU mocap data for subject {spec.key!r}; looked for {searched}. Fetch it with "
        f"`eghn data mocap --download --subject {spec.key}{_unverified(spec)}` "
        "(or MocapDataset(..., download=True)), "
        "or point EGHN_DATA_DIR / data_dir at a folder holding it")


# ---------------------------------------------------------------------------- graphs
def skeleton_graph(edges: np.ndarray, num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Global (within two hops) and local (bone) edges of a skeleton.

    Args:
        edges: ``(E, 2)`` child -> parent pairs of a tree.
        num_nodes: number of nodes ``N``.

    Returns:
        ``(edge_index, edge_attr, local_edge_index)``: ``edge_index`` ``(2, E_g)`` holds every
        ordered pair ``(i, j)``, ``i != j``, at most two bones apart (receiver first, sorted);
        ``edge_attr`` ``(E_g, 2)`` is the one-hot hop count ``[hop == 1, hop == 2]``;
        ``local_edge_index`` ``(2, 2E)`` are the bones in both directions.

    Example:
        >>> import numpy as np
        >>> from eghn.data.mocap import skeleton_graph
        >>> edge_index, edge_attr, local = skeleton_graph(np.array([[1, 0], [2, 1]]), 3)  # a chain 0 - 1 - 2
        >>> edge_index.tolist(), edge_attr[:, 1].tolist(), local.shape[1]
        ([[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]], [0.0, 1.0, 0.0, 0.0, 1.0, 0.0], 4)
    """
    adj = np.zeros((num_nodes, num_nodes), dtype=bool)
    adj[edges[:, 0], edges[:, 1]] = True
    adj[edges[:, 1], edges[:, 0]] = True
    two = ((adj.astype(np.int64) @ adj.astype(np.int64)) > 0) & ~adj
    np.fill_diagonal(two, False)
    hop = np.where(adj, 1, np.where(two, 2, 0))
    i, j = np.nonzero(hop)
    edge_index = torch.from_numpy(np.stack([i, j]).astype(np.int64))
    h = hop[i, j]
    edge_attr = torch.from_numpy(np.stack([h == 1, h == 2], axis=1).astype(np.float32))
    li, lj = np.nonzero(adj)
    local = torch.from_numpy(np.stack([li, lj]).astype(np.int64))
    return edge_index, edge_attr, local


class MocapDataset:
    """CMU motion capture under the paper's protocol: :math:`(x_t, v_t) \\to x_{t+30}`.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        subject: ``"walk"`` (CMU Subject 35) or ``"run"`` (CMU Subject 9).
        data_dir: folder holding ``cmu35_walk.npz`` / ``cmu09_run.npz`` or the raw
            ``cmu35_walk/`` files (default: searched, see the module docstring).
        max_samples: requested samples; each trial of the partition contributes its first
            ``max_samples // n_trials`` start frames (default: the paper's 200/600/600 for
            walk, giving 198/600/600, and 200/240/240 for run).
        delta_frame: frames between input and target (paper: 30).
        cache_dir: where raw files are preprocessed to (and downloaded to); default: the
            user cache.
        download: fetch the raw files from the CMU site when nothing is found locally.
        dtype: floating dtype of the tensors.
        features: ``"paper"`` (node feature height / 10, global edge feature one-hot hop
            count, no local edge features) or ``"released"`` (the authors' released code:
            node features ``[|v|, y / 10]``, global edge features ``[hop count, |x_i - x_j|^2]``,
            local edge features ``[1, |x_i - x_j|^2]`` of the input positions; that code
            also divides the second node feature by its maximum over the batch, which
            :class:`~eghn.models.EGHN` does with ``batch_max_features=[1]``).

    Each sample is a :class:`~eghn.data.graph.Graph` with ``pos`` = :math:`x_t`, ``vel`` =
    :math:`v_t = x_{t+1} - x_t`, ``h`` = height / 10, ``target`` = :math:`x_{t+30}`,
    global edges within two hops (one-hot hop count) and local edges = bones.

    Shapes:
        - ``pos``, ``vel``, ``target``: ``(31, 3)``; ``h``: ``(31, 1)`` (``(31, 2)`` with
          ``features="released"``)
        - ``edge_index``: ``(2, 130)``, ``edge_attr``: ``(130, 2)``
        - ``local_edge_index``: ``(2, 60)``; ``local_edge_attr``: ``None`` (``(60, 2)`` with
          ``features="released"``)

    Attributes:
        samples: ``(trial_id, start_frame)`` of every sample, shape ``(S, 2)``.

    Example:
        Needs the downloaded data, see :func:`download`, so it is skipped when the docs are tested.

        >>> from eghn.data.mocap import MocapDataset
        >>> ds = MocapDataset("train", subject="run")  # doctest: +SKIP
        >>> g = ds[0]  # doctest: +SKIP
        >>> len(ds), tuple(g.pos.shape), tuple(g.edge_index.shape), tuple(g.h.shape)  # doctest: +SKIP
        (200, (31, 3), (2, 130), (31, 1))
    """

    node_dim = 1
    edge_dim = 2
    local_edge_dim = 0
    #: power of length of each feature column (see :mod:`eghn.data.units`): the height y / 10;
    #: two bond-type flags
    feature_length_powers: ClassVar[dict[str, tuple[int, ...]]] = {"h": (1,), "edge_attr": (0, 0)}
    #: the node feature is the height: models are equivariant about the vertical axis only
    rotation_axis: ClassVar[int] = 1

    def __init__(self, split: str = "train", subject: str = "walk", data_dir: str | os.PathLike | None = None,
                 max_samples: int | None = None, *, delta_frame: int = 30,
                 cache_dir: str | os.PathLike | None = None, download: bool = False,
                 dtype: torch.dtype = torch.float32, features: str = "paper"):
        if features not in ("paper", "released"):
            raise ValueError(f"features must be 'paper' or 'released', got {features!r}")
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        spec = _subject(subject)
        if delta_frame < 1:
            raise ValueError(f"delta_frame must be >= 1, got {delta_frame}")
        self.split, self.subject, self.delta_frame = split, subject, delta_frame
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.path = _locate(spec, data_dir, cache, download)
        trials, edges = load_npz(self.path)
        if trials[0].shape[1] != 31 or not np.array_equal(edges, SKELETON_EDGES):
            raise ValueError(f"{self.path}: expected the 31-node CMU skeleton and its edge list")
        partition = make_split(subject)[split]
        if max(partition) >= len(trials):
            raise ValueError(f"{self.path}: has {len(trials)} trials but the {split} split uses trial id "
                             f"{max(partition)}")
        if max_samples is None:
            max_samples = spec.max_samples[split]
        per = int(max_samples) // len(partition)
        if per < 1 or per > spec.per_trial:
            raise ValueError(
                f"max_samples={max_samples} gives {per} samples for each of the {len(partition)} "
                f"{subject}/{split} trials, but only 1..{spec.per_trial} start frames per trial exist "
                f"(max_samples between {len(partition)} and {spec.per_trial * len(partition)})")
        xs, vs, ys, samples = [], [], [], []
        for tid, starts in partition.items():
            traj = trials[tid]
            x, v = traj[:-1], traj[1:] - traj[:-1]
            t = np.asarray(starts[:per])
            last = int(t.max()) + delta_frame
            if last >= x.shape[0]:
                raise ValueError(
                    f"{self.path}: trial {tid} has {traj.shape[0]} frames ({x.shape[0]} with velocities), "
                    f"too short for start frame {int(t.max())} + gap {delta_frame}")
            xs.append(x[t])
            vs.append(v[t])
            ys.append(x[t + delta_frame])
            samples.extend((tid, int(s)) for s in t)
        self.pos = torch.as_tensor(np.concatenate(xs), dtype=dtype)
        self.vel = torch.as_tensor(np.concatenate(vs), dtype=dtype)
        self.target = torch.as_tensor(np.concatenate(ys), dtype=dtype)
        self.h = self.pos[..., 1:2] / 10.0
        self.samples = np.asarray(samples, dtype=np.int64)
        self.edge_index, self.edge_attr, self.local_edge_index = skeleton_graph(edges, 31)
        self.edge_attr = self.edge_attr.to(dtype)
        self.num_nodes = 31
        self.features = features
        self.local_edge_attr = None
        self._d2 = self._local_d2 = None
        if features == "released":
            self.node_dim, self.edge_dim, self.local_edge_dim = 2, 2, 2
            self.feature_length_powers = {"h": (1, 1), "edge_attr": (0, 2), "local_edge_attr": (0, 2)}
            self.h = torch.cat([self.vel.norm(dim=-1, keepdim=True), self.h], -1)
            self.edge_attr = (self.edge_attr[:, :1] + 2 * self.edge_attr[:, 1:]).to(dtype)  # hop count

            def d2(ei: Tensor) -> Tensor:
                diff = self.pos[:, ei[0]] - self.pos[:, ei[1]]
                return (diff * diff).sum(-1, keepdim=True)  # (S, E, 1)

            self._d2, self._local_d2 = d2(self.edge_index), d2(self.local_edge_index)
            self.local_edge_attr = torch.ones(self.local_edge_index.shape[1], 1, dtype=dtype)

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def __repr__(self) -> str:
        return (f"MocapDataset(subject={self.subject!r}, split={self.split!r}, samples={len(self)}, "
                f"delta_frame={self.delta_frame}, features={self.features!r}, path={str(self.path)!r})")

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        return i % n

    def __getitem__(self, i: int) -> Graph:
        i = self._index(int(i))
        ea, lea = self.edge_attr, self.local_edge_attr
        if self._d2 is not None:
            ea, lea = torch.cat([ea, self._d2[i]], -1), torch.cat([lea, self._local_d2[i]], -1)
        return Graph(pos=self.pos[i], h=self.h[i], vel=self.vel[i], edge_index=self.edge_index,
                     edge_attr=ea, local_edge_index=self.local_edge_index, local_edge_attr=lea,
                     target=self.target[i])

    def collate(self, indices: Sequence[int] | Tensor) -> Graph:
        """A batch of samples, built by stacking (the skeleton is the same in every sample).

        Shapes:
            ``pos``/``vel``/``target`` ``(31 B, 3)``, ``edge_index`` ``(2, 130 B)``, ``batch`` ``(31 B,)``.
        """
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if idx.numel() == 0:
            raise ValueError("collate() needs at least one sample index")
        n = len(self)
        if bool(((idx < -n) | (idx >= n)).any()):
            raise IndexError(f"sample indices out of range for {n} samples")
        idx = idx % n
        b, k = idx.numel(), self.num_nodes
        offsets = torch.arange(b) * k

        def tile(ei: Tensor) -> Tensor:
            return (ei.unsqueeze(1) + offsets.view(1, b, 1)).reshape(2, -1)

        ea = self.edge_attr.repeat(b, 1)
        lea = None
        if self._d2 is not None:
            ea = torch.cat([ea, self._d2[idx].reshape(-1, 1)], -1)
            lea = torch.cat([self.local_edge_attr.repeat(b, 1), self._local_d2[idx].reshape(-1, 1)], -1)
        return Graph(
            pos=self.pos[idx].reshape(b * k, 3), h=self.h[idx].reshape(b * k, self.node_dim),
            vel=self.vel[idx].reshape(b * k, 3), target=self.target[idx].reshape(b * k, 3),
            edge_index=tile(self.edge_index), edge_attr=ea,
            local_edge_index=tile(self.local_edge_index), local_edge_attr=lea,
            batch=torch.arange(b).repeat_interleave(k), num_graphs=b,
        )


# ---------------------------------------------------------------------------- command line
def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eghn data mocap`` (download and/or preprocess CMU motion capture).

    Example:
        >>> import argparse
        >>> from eghn.data.mocap import register_cli
        >>> parser = argparse.ArgumentParser(prog="eghn data")
        >>> _ = register_cli(parser.add_subparsers())
        >>> args = parser.parse_args(["mocap", "--preprocess", "--subject", "run"])
        >>> args.subject, args.preprocess, args.download
        ('run', True, False)
    """
    p = subparsers.add_parser(
        "mocap", help="download / preprocess CMU motion capture (Subject 35 walk, Subject 9 run)",
        description="Fetch the raw ASF/AMC files from mocap.cs.cmu.edu (sha256-checked) and/or "
                    "preprocess them into <out>/cmu35_walk.npz (or cmu09_run.npz).")
    p.add_argument("--subject", choices=sorted(SUBJECTS), default="walk",
                   help="walk: CMU Subject 35; run: CMU Subject 9 (default walk)")
    p.add_argument("--download", action="store_true", help="fetch the raw files, then preprocess them")
    p.add_argument("--preprocess", action="store_true", help="preprocess raw files already on disk")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: the user cache, e.g. ~/.cache/eghn/mocap); raw files go "
                        "to <out>/cmu35_walk/ (or cmu09_run/), the npz to <out>/")
    p.add_argument("--raw", type=Path, default=None,
                   help="folder with the raw ASF/AMC files for --preprocess "
                        "(default: <out>/cmu35_walk or <out>/cmu09_run)")
    p.add_argument("--allow-unverified", action="store_true",
                   help="allow downloading subject 'run' (Subject 9), for which no checksums are shipped")
    p.set_defaults(func=_run_cli, _mocap_parser=p)
    return p


def _run_cli(args: argparse.Namespace) -> int:
    if not (args.download or args.preprocess):
        args._mocap_parser.error("give --download and/or --preprocess")
    spec = _subject(args.subject)
    out = args.out if args.out is not None else default_cache_dir() / "mocap"
    raw = args.raw if args.raw is not None else out / spec.raw_name
    try:
        if args.download:
            raw = download(spec.key, out, allow_unverified=args.allow_unverified)
        path = preprocess(raw, spec.key, out / spec.npz_name)
        trials, _ = load_npz(path)
    except (ValueError, OSError) as exc:  # checksum, parse and network errors: one clear line
        print(f"eghn data mocap: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}: {len(trials)} trials, {sum(len(t) for t in trials)} frames, 31 nodes")
    return 0
