"""Shared fixtures and hypothesis profiles.

Profiles: ``ci`` (default, a handful of examples per property, fast on 2 CPU cores) and
``thorough`` (used by ``tox -e gpu`` / nightly: many more examples). Select one with
``HYPOTHESIS_PROFILE=thorough``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=8, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# tiny test graphs gain nothing from intra-op threads, which only contend on small CI machines
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The shared data folder (``EGHN_DATA_DIR`` or ``../shared/data`` beside the repo), if present."""
    env = os.environ.get("EGHN_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def small_mcomplex(tmp_path_factory) -> Path:
    """A small generated M-complex (3,3) dataset folder (60/20/30 trajectories, 2,600 steps),
    shared by the tests that train through the package."""
    from eghn.data.mcomplex import generate_mcomplex_dataset

    return generate_mcomplex_dataset(tmp_path_factory.mktemp("mcomplex") / "m3s3", 3, 3, 1, n_train=60, n_val=20,
                                     n_test=30, seed=3, n_steps=2600, progress=False)


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    if os.environ.get("EGHN_REQUIRE_CUDA") == "1":
        raise pytest.UsageError("EGHN_REQUIRE_CUDA=1 but PyTorch sees no CUDA device: the GPU checks cannot run")
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
