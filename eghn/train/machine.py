"""The machine a run trained on, as recorded in its ``last.pt`` and ``result.json``.

A seed fixes a run's data, initial weights and batch order, but floating-point results also depend
on the hardware and the PyTorch build: the CPU's vector instructions (``cpu_capability``: AVX2,
AVX-512, ...) and the number of threads change how sums are split and rounded, and a training run
amplifies a difference in the last bit until the trajectories part. The same seed therefore gives
the same numbers bit for bit only on the same kind of machine, PyTorch build and thread count. A
run records each machine it trained on (a resumed run may have moved), so that a rerun that
differs can be told apart from one that is wrong.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

__all__ = ["cpu_name", "machine_record"]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; :func:`platform.processor` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_record(device: torch.device | str | None = None) -> dict[str, Any]:
    """What decides a run's floating-point results besides its config and seed.

    Args:
        device: the device the run trains on (adds the GPU's name for a CUDA device).

    Returns:
        ``cpu`` (model name), ``cpu_capability`` (the vector instructions PyTorch's CPU kernels
        use), ``cores``, ``threads`` (PyTorch's intra-op threads), ``torch``, ``python`` and,
        for a CUDA device, ``gpu``.

    Example:
        >>> from eghn.train.machine import machine_record
        >>> record = machine_record("cpu")
        >>> sorted(record)
        ['cores', 'cpu', 'cpu_capability', 'device', 'python', 'threads', 'torch']
        >>> record["torch"] == torch.__version__
        True
    """
    record: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
    if device is not None:
        dev = torch.device(device)
        record["device"] = str(dev)
        if dev.type == "cuda" and torch.cuda.is_available():
            record["gpu"] = torch.cuda.get_device_name(dev)
    return record
