"""eghn.train.malloc: freed memory stays in the process for the next step (glibc only)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from eghn.train.malloc import reuse_freed_memory

_PROBE = """
import sys, torch
if sys.argv[1] == "reuse":
    from eghn.train.malloc import reuse_freed_memory
    assert reuse_freed_memory()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
base = rss()
x = torch.ones(16 * 2**20)  # 64 MB, touched
del x
print(rss() - base)
"""


def _glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="needs Linux with glibc")
def test_freed_tensor_memory_is_kept_only_with_reuse():
    kept = {}
    for kind in ("reuse", "default"):
        out = subprocess.run([sys.executable, "-c", _PROBE, kind], capture_output=True, text=True, check=True)
        kept[kind] = float(out.stdout.strip())
    assert kept["reuse"] > 48, kept  # the 64 MB block stays in the heap for the next allocation
    assert kept["default"] < 16, kept  # glibc's default: an mmap'd block, unmapped when freed


@pytest.mark.skipif(not _glibc(), reason="needs Linux with glibc")
def test_reuse_reports_success_on_glibc():
    assert reuse_freed_memory() is True


@pytest.mark.parametrize("mode", ["reuse", "default"])
def test_trainer_applies_cpu_malloc_setting(tmp_path, monkeypatch, mode):
    from _train_toy import toy_config

    from eghn.train import loop

    calls = []
    monkeypatch.setattr(loop, "reuse_freed_memory", lambda: calls.append(1) or True)
    cfg = toy_config(tmp_path, epochs=1, eval_every=1, threads=1)
    cfg["train"]["cpu_malloc"] = mode
    loop.train(cfg, tmp_path / "run", echo=lambda *a, **k: None)
    assert len(calls) == (1 if mode == "reuse" else 0)


def test_cpu_malloc_value_is_checked():
    from eghn.train.config import ConfigError, resolve

    with pytest.raises(ConfigError, match="cpu_malloc"):
        resolve({"train": {"cpu_malloc": "jemalloc"}, "data": {"name": "x"}, "model": {"name": "y"}})
