"""Crash-safe file output: atomic writes, atomic directory replacement and run-directory locks.

Every file of user data (checkpoints, metrics, configs, generated datasets, preprocessed and
downloaded files) is written through these helpers:

* :func:`atomic_write` / :func:`atomic_write_bytes` / :func:`atomic_write_text`: the data go
  to a temporary file with a unique name in the destination's folder, are flushed and
  ``fsync``-ed, and the file is renamed over the destination (then the folder is synced).
  A kill at any moment leaves either the old or the new file, never a torn one, and two
  writers never share a temporary file.
* :func:`staging_dir` + :func:`replace_dir`: a set of files (a dataset split by split) is
  written into a fresh sibling folder and swapped in with two renames; :func:`recover_dir`
  undoes a swap that a kill interrupted, so a reader sees the whole old set or the whole new
  one.
* :class:`DirLock`: an exclusive, non-blocking ``flock`` on ``<dir>/.lock``; a second process
  gets :class:`LockedError` naming the holder.

Temporary names start with ``.eghn-tmp-`` (``.eghn-old-`` for a replaced folder) so that
:func:`clean_orphans` can remove what a killed process left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "DirLock",
    "LockedError",
    "WriteGroup",
    "append_text",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_orphans",
    "read_json_object",
    "recover_dir",
    "replace_dir",
    "staging_dir",
]

TMP_PREFIX = ".eghn-tmp-"
OLD_PREFIX = ".eghn-old-"
#: temporary files or folders older than this (seconds) are considered orphans
ORPHAN_AGE_S = 3600.0


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask_mode(mode: int = 0o666) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, newline: str | None = None) -> Iterator[IO]:
    """Open a unique temporary file beside ``path``; on success fsync it and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched. The file gets
    the usual permissions (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.io import atomic_write
        >>> path = Path(tempfile.mkdtemp()) / "numbers.txt"
        >>> with atomic_write(path, "w") as f:
        ...     _ = f.write("1 2 3\\n")
        >>> path.read_text(), [p.name for p in path.parent.iterdir()]  # no temporary file left behind
        ('1 2 3\\n', ['numbers.txt'])
    """
    path = Path(path)
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp, _umask_mode())
        with open(fd, mode, newline=newline) if "b" in mode else open(fd, mode, newline=newline,
                                                                      encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(e, OSError) and e.errno is not None and not e.filename:
            # a failed write() or fsync() (e.g. ENOSPC) names no file: name the destination
            raise type(e)(e.errno, e.strerror or str(e), str(path)) from e
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.io import atomic_write_bytes
        >>> path = Path(tempfile.mkdtemp()) / "blob.bin"
        >>> atomic_write_bytes(path, b"\\x00\\x01")
        >>> path.read_bytes()
        b'\\x00\\x01'
    """
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.io import atomic_write_text
        >>> path = Path(tempfile.mkdtemp()) / "note.txt"
        >>> atomic_write_text(path, "old")
        >>> atomic_write_text(path, "new")  # replaces the file whole
        >>> path.read_text()
        'new'
    """
    with atomic_write(path, "w") as f:
        f.write(text)


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` (UTF-8) to ``path`` whole or not at all.

    The bytes are written and fsync-ed; when that fails (e.g. ``ENOSPC`` part-way) the file is
    cut back to its old length, so it never ends in a torn line.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.io import append_text
        >>> path = Path(tempfile.mkdtemp()) / "log.txt"
        >>> append_text(path, "epoch 1\\n")
        >>> append_text(path, "epoch 2\\n")
        >>> path.read_text().splitlines()
        ['epoch 1', 'epoch 2']
    """
    path = Path(path)
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _umask_mode())
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            if isinstance(e, OSError) and e.errno is not None and not e.filename:
                raise type(e)(e.errno, e.strerror or str(e), str(path)) from e
            raise
    finally:
        os.close(fd)


class WriteGroup:
    """Files written together: each to a temporary file first, then all renamed into place.

    ``add(path, data)`` writes and fsyncs ``data`` to a unique temporary file beside ``path``
    at once; :meth:`commit` renames every file to its destination in the order added (renames
    need no space). When any write fails, or the ``with`` block raises, every temporary file is
    removed and no destination is touched: a full disk leaves the old files byte-identical.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> with WriteGroup() as group:
        ...     group.add(d / "a.txt", b"one")
        ...     group.add(d / "b.txt", "two")
        >>> sorted(p.name for p in d.iterdir()), (d / "b.txt").read_text()
        (['a.txt', 'b.txt'], 'two')
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def add(self, path: str | Path, data: bytes | str) -> None:
        """Stage ``data`` (bytes, or text as UTF-8) for ``path``."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
        tmp_path = Path(tmp)
        self._staged.append((tmp_path, path))
        try:
            os.chmod(tmp, _umask_mode())
            with open(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            if e.errno is not None and not e.filename:
                raise type(e)(e.errno, e.strerror or str(e), str(path)) from e
            raise

    def discard(self) -> None:
        """Remove every staged temporary file."""
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged = []

    def commit(self) -> None:
        """Rename every staged file into place, in the order they were added."""
        folders = set()
        try:
            while self._staged:
                tmp, dest = self._staged[0]
                os.replace(tmp, dest)
                self._staged.pop(0)
                folders.add(dest.parent)
        finally:
            self.discard()
        for folder in folders:
            _fsync_dir(folder)

    def __enter__(self) -> WriteGroup:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def staging_dir(dest: str | Path) -> Path:
    """A new empty folder beside ``dest`` to fill before :func:`replace_dir`.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.io import staging_dir
        >>> dest = Path(tempfile.mkdtemp()) / "dataset"
        >>> staged = staging_dir(dest)
        >>> staged.parent == dest.parent, staged.name.startswith(".eghn-tmp-dataset."), dest.exists()
        (True, True, False)
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + dest.name + ".", dir=dest.parent))
    os.chmod(tmp, _umask_mode(0o777))
    return tmp


def replace_dir(staged: str | Path, dest: str | Path) -> None:
    """Swap the fully written folder ``staged`` in as ``dest`` (the old ``dest`` is removed).

    The files of ``staged`` are fsync-ed first. A kill between the two renames leaves the old
    folder under a ``.eghn-old-`` name, which :func:`recover_dir` puts back.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.io import replace_dir, staging_dir
        >>> dest = Path(tempfile.mkdtemp()) / "dataset"
        >>> dest.mkdir()
        >>> _ = (dest / "old.npz").write_bytes(b"")
        >>> staged = staging_dir(dest)
        >>> _ = (staged / "new.npz").write_bytes(b"")
        >>> replace_dir(staged, dest)
        >>> sorted(p.name for p in dest.iterdir()), sorted(p.name for p in dest.parent.iterdir())
        (['new.npz'], ['dataset'])
    """
    staged, dest = Path(staged), Path(dest)
    for f in staged.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(staged)
    old = None
    if dest.exists():
        old = dest.with_name(f"{OLD_PREFIX}{dest.name}.{os.getpid()}.{time.time_ns()}")
        os.rename(dest, old)
    os.rename(staged, dest)
    _fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_dir(dest: str | Path) -> None:
    """If a kill interrupted :func:`replace_dir` after moving ``dest`` away, move it back.

    Example:
        >>> import os, tempfile
        >>> from pathlib import Path
        >>> from eghn.io import recover_dir
        >>> dest = Path(tempfile.mkdtemp()) / "dataset"
        >>> (dest.parent / ".eghn-old-dataset.123.456").mkdir()  # what a kill between the two renames leaves
        >>> recover_dir(dest)
        >>> dest.is_dir()
        True
    """
    dest = Path(dest)
    if dest.exists() or not dest.parent.is_dir():
        return
    olds = sorted(dest.parent.glob(f"{OLD_PREFIX}{dest.name}.*"), key=lambda p: p.stat().st_mtime)
    if olds:
        with contextlib.suppress(OSError):
            os.rename(olds[-1], dest)


def clean_orphans(folder: str | Path, *, max_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove temporary files/folders of killed writers in ``folder`` (older than ``max_age_s``).

    Returns the removed paths. Folders of a replaced destination that still exists are removed
    too; see :func:`recover_dir` for one whose destination is missing.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.io import clean_orphans
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / ".eghn-tmp-run.json.abc").write_text("{")  # a writer killed mid-write
        >>> _ = (folder / "run.json").write_text("{}")
        >>> [p.name for p in clean_orphans(folder, max_age_s=0)], [p.name for p in folder.iterdir()]
        (['.eghn-tmp-run.json.abc'], ['run.json'])
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for p in folder.iterdir():
        name = p.name
        if name.startswith(OLD_PREFIX):
            target = folder / name[len(OLD_PREFIX):].rsplit(".", 2)[0]
            if not target.exists():
                continue
        elif not name.startswith(TMP_PREFIX):
            continue
        try:
            if now - p.stat().st_mtime < max_age_s:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            continue
    return removed


class LockedError(RuntimeError):
    """The folder is locked by another process.

    Example:
        >>> from eghn.io import LockedError
        >>> issubclass(LockedError, RuntimeError)
        True
    """


class DirLock:
    """Exclusive lock of a folder (``flock`` on ``<folder>/.lock``), held until :meth:`release`.

    Use as a context manager. Where ``fcntl`` is missing (Windows) locking is skipped.

    Example:
        >>> import tempfile
        >>> from eghn.io import DirLock, LockedError
        >>> folder = tempfile.mkdtemp()
        >>> with DirLock(folder, "run directory"):
        ...     try:
        ...         DirLock(folder).acquire()
        ...     except LockedError:
        ...         print("locked")
        locked
        >>> DirLock(folder).acquire().release()  # free again
    """

    def __init__(self, folder: str | Path, what: str = "folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        path = self.folder / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise LockedError(f"{self.what} {self.folder} is in use by another eghn process{who}; "
                              "wait for it to finish or choose another directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_json_object(path: str | Path, error: type[Exception] = ValueError) -> dict:
    """The JSON object in ``path``; ``error`` (a ``ValueError`` subclass by default) naming the
    file when it cannot be read, is not valid JSON or holds something else than an object.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.io import read_json_object
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "ok.json").write_text('{"epoch": 3}')
        >>> _ = (folder / "list.json").write_text("[1, 2]")
        >>> read_json_object(folder / "ok.json")
        {'epoch': 3}
        >>> read_json_object(folder / "list.json")
        Traceback (most recent call last):
            ...
        ValueError: ... is corrupt (not a JSON object)
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise error(f"{path} is corrupt or unreadable ({e})") from None
    if not isinstance(data, dict):
        raise error(f"{path} is corrupt (not a JSON object)")
    return data
