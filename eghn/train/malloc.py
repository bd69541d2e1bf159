"""Keep freed memory in the process for reuse while training on a CPU (glibc).

A training step allocates and frees the same large tensors (edge activations of several MB)
every time. With glibc's default settings, blocks above the ``mmap`` threshold are mapped from
the operating system when allocated and unmapped when freed, and the top of the heap is given
back above the trim threshold, so every step pays page faults and zero-filling for memory it
had a moment ago. :func:`reuse_freed_memory` raises both thresholds: freed blocks stay in the
heap and are reused by the next step. Peak memory is unchanged (the same tensors are alive at
the peak); the process keeps its peak resident size between steps instead of shrinking.

``eghn train`` calls it on a CPU (``train.cpu_malloc = "reuse"``, the default; ``"default"``
leaves the C library's settings alone). ``benchmarks/fast_paths.py --malloc`` measures the gain.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["reuse_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP = 1 << 30  # blocks up to 1 GiB come from (and return to) the heap


def reuse_freed_memory() -> bool:
    """Raise glibc's ``mmap`` and trim thresholds to 1 GiB for this process (see the module
    docstring). Returns ``False``, changing nothing, where the C library is not glibc.

    Example:
        >>> from eghn.train.malloc import reuse_freed_memory
        >>> isinstance(reuse_freed_memory(), bool)  # True on glibc
        True
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
