"""Where :mod:`eghn` looks for data files and where it caches downloads.

Search order for data (:func:`data_roots`):

1. the folder named by the environment variable ``EGHN_DATA_DIR``;
2. ``../shared/data`` next to the repository root (a development checkout);
3. the user cache (:func:`cache_dir`): ``$EGHN_CACHE_DIR``, else ``$XDG_CACHE_HOME/eghn``,
   else ``~/.cache/eghn``; downloads and preprocessed files are written there.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "DATA_ENV", "cache_dir", "data_roots", "find_data", "repo_root"]

DATA_ENV = "EGHN_DATA_DIR"
CACHE_ENV = "EGHN_CACHE_DIR"


def repo_root() -> Path | None:
    """The source checkout holding this package (``None`` for an installed copy).

    Example:
        >>> from eghn.data.paths import repo_root
        >>> root = repo_root()  # None for an installed copy
        >>> root is None or (root / "pyproject.toml").is_file()
        True
    """
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def cache_dir() -> Path:
    """The user cache folder for downloads and preprocessed data (not created here).

    Example:
        >>> import os
        >>> from unittest import mock
        >>> from eghn.data.paths import cache_dir
        >>> with mock.patch.dict(os.environ, {"EGHN_CACHE_DIR": "/tmp/eghn-cache"}):
        ...     str(cache_dir())
        '/tmp/eghn-cache'
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "eghn"


def data_roots() -> list[Path]:
    """Existing data folders in search order (see the module docstring).

    Raises:
        NotADirectoryError: ``EGHN_DATA_DIR`` is set but is not a folder.

    Example:
        >>> import os, tempfile
        >>> from pathlib import Path
        >>> from unittest import mock
        >>> from eghn.data.paths import data_roots
        >>> folder = tempfile.mkdtemp()
        >>> with mock.patch.dict(os.environ, {"EGHN_DATA_DIR": folder}):
        ...     data_roots()[0] == Path(folder)
        True
    """
    roots: list[Path] = []
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise NotADirectoryError(f"{DATA_ENV}={env!r} is not a folder")
        roots.append(path)
    repo = repo_root()
    if repo is not None and (repo.parent / "shared" / "data").is_dir():
        roots.append(repo.parent / "shared" / "data")
    if cache_dir().is_dir():
        roots.append(cache_dir())
    return roots


def find_data(relpath: str | os.PathLike) -> Path | None:
    """The first ``root / relpath`` that exists over :func:`data_roots`, else ``None``.

    Example:
        >>> import os, tempfile
        >>> from pathlib import Path
        >>> from unittest import mock
        >>> from eghn.data.paths import find_data
        >>> folder = Path(tempfile.mkdtemp())
        >>> (folder / "mocap").mkdir()
        >>> with mock.patch.dict(os.environ, {"EGHN_DATA_DIR": str(folder)}):
        ...     find_data("mocap") == folder / "mocap", find_data("no-such-file.npz")
        (True, None)
    """
    for root in data_roots():
        if (root / relpath).exists():
            return root / relpath
    return None
