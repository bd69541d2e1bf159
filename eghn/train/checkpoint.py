"""Checkpoints that load with ``torch.load(weights_only=True)``, protected by a SHA-256 checksum.

A checkpoint holds a dictionary of tensors and primitive containers only (no pickled objects):

* ``model``: the model's ``state_dict``; ``optimizer``: the optimizer's ``state_dict``;
  ``scaler``: the AMP grad scaler's ``state_dict`` (or ``{}``);
* ``epoch``: last completed epoch; ``evals_since_best``: early-stopping counter;
* ``best``: ``{"epoch", "val", "test"}`` of the best validation so far;
* ``history``: one dictionary of numbers per evaluation (the metrics CSV);
* ``rng``: ``{"torch": ByteTensor, "cuda": [ByteTensor...], "shuffle": ByteTensor}``;
* ``config``: the resolved configuration as a JSON string; ``format``: version number.

On disk (format 2) that dictionary is serialised by ``torch.save`` into a byte string, which is
stored as a ``uint8`` tensor ``payload`` beside its ``sha256`` in an outer ``torch.save``
file ``{"format": 2, "sha256": str, "payload": uint8 tensor}``. :func:`load_checkpoint`
refuses a file whose payload does not match its checksum, naming the file. The file is
written atomically (unique temporary name, fsync, rename: :func:`eghn.io.atomic_write_bytes`).
Format-1 files (the dictionary itself, no checksum) still load.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "checkpoint_bytes", "file_sha256", "load_checkpoint",
           "save_checkpoint"]

CHECKPOINT_FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated or not an eghn checkpoint.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.checkpoint import CheckpointError, load_checkpoint
        >>> path = Path(tempfile.mkdtemp()) / "last.pt"
        >>> _ = path.write_bytes(b"not a checkpoint")
        >>> try:
        ...     load_checkpoint(path)
        ... except CheckpointError as e:
        ...     print(type(e).__name__, isinstance(e, ValueError))
        CheckpointError True
    """


def _to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """The file contents :func:`save_checkpoint` writes for ``state`` (payload and its checksum).

    Example:
        >>> import io, torch
        >>> from eghn.train.checkpoint import checkpoint_bytes
        >>> data = checkpoint_bytes({"epoch": 3})
        >>> sorted(torch.load(io.BytesIO(data), weights_only=True))  # the payload and its checksum
        ['format', 'payload', 'sha256']
    """
    inner = _to_bytes({"format": CHECKPOINT_FORMAT, **state})
    return _to_bytes({"format": CHECKPOINT_FORMAT, "sha256": hashlib.sha256(inner).hexdigest(),
                      "payload": torch.frombuffer(bytearray(inner), dtype=torch.uint8)})


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with its checksum, atomically, so a kill never leaves a torn file.

    The bytes are built in memory first, so a full disk raises an ``OSError`` (``ENOSPC``)
    rather than an error from inside torch's zip writer.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from eghn.train.checkpoint import load_checkpoint, save_checkpoint
        >>> path = Path(tempfile.mkdtemp()) / "last.pt"
        >>> save_checkpoint(path, {"epoch": 3, "model": {"w": torch.ones(2)}})
        >>> state = load_checkpoint(path)
        >>> state["epoch"], state["model"]["w"].tolist()
        (3, [1.0, 1.0])
    """
    atomic_write_bytes(path, checkpoint_bytes(state))


def file_sha256(path: str | Path) -> str:
    """SHA-256 of the bytes of ``path`` (hex), e.g. to tie ``result.json`` to its ``best.pt``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.checkpoint import file_sha256
        >>> path = Path(tempfile.mkdtemp()) / "empty"
        >>> _ = path.write_bytes(b"")
        >>> file_sha256(path)[:16]
        'e3b0c44298fc1c14'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load(source, what: str, map_location) -> Any:
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt/unsafe files
        text = str(e)
        if "Unsupported global" in text:
            # never pass on torch's advice to load without weights_only: that would run the
            # file's code
            raise CheckpointError(f"refusing checkpoint {what}: it holds Python objects other than "
                                  "tensors and plain containers, so it is not an eghn checkpoint and "
                                  "loading it could run code from the file") from None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if "weights_only" in text:  # keep the unpickler's reason, drop the advice around it
            lines = [ln.split("error:", 1)[-1].strip() for ln in lines if "WeightsUnpickler" in ln] or [
                "rejected by the safe loader"]
        first = lines[0] if lines else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {what}: the file is corrupt or not a "
                              f"checkpoint ({first})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises :class:`CheckpointError` (a ``ValueError``) naming ``path`` when the file is corrupt
    (checksum mismatch, truncated, not a torch file) or not an eghn checkpoint.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
        >>> path = Path(tempfile.mkdtemp()) / "last.pt"
        >>> save_checkpoint(path, {"epoch": 3, "model": {}})
        >>> load_checkpoint(path)["epoch"]
        3
        >>> _ = path.write_bytes(path.read_bytes()[:-10])  # truncated
        >>> try:
        ...     load_checkpoint(path)
        ... except CheckpointError:
        ...     print("corrupt")
        corrupt
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = _load(path, str(path), "cpu")
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT and "payload" in state:
        payload = state["payload"]
        if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
            raise CheckpointError(f"checkpoint {path} is corrupt (no payload)")
        data = payload.numpy().tobytes()
        if hashlib.sha256(data).hexdigest() != state.get("sha256"):
            raise CheckpointError(f"checkpoint {path} is corrupt: its contents do not match their "
                                  "SHA-256 checksum (damaged on disk or in transfer)")
        state = _load(io.BytesIO(data), str(path), map_location)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint {path} is corrupt (bad inner format)")
    elif isinstance(state, dict) and state.get("format") == 1 and "model" in state:
        if map_location != "cpu":
            state = _load(path, str(path), map_location)
    else:
        raise CheckpointError(f"{path} is not an eghn checkpoint (format {CHECKPOINT_FORMAT})")
    if "model" not in state:
        raise CheckpointError(f"{path} is not an eghn checkpoint (it holds no model)")
    if isinstance(state.get("config"), str):
        try:
            state["config"] = json.loads(state["config"])
        except json.JSONDecodeError:
            raise CheckpointError(f"checkpoint {path} holds an unreadable config") from None
    return state
