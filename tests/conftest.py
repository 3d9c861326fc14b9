"""Shared fixtures: one torch thread, default dtype control and the location of ``../shared`` data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from molequi.dtypes import default_dtype

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One torch thread for the whole suite: the tests run on a shared 2-core machine, where several
    threads per process spin against each other on these small tensors (10x slower under load) and
    results would depend on the thread count. A test that needs more threads sets and restores them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def dtype(request):
    """Run the test under each default dtype (modules are built in it)."""
    with default_dtype(request.param):
        yield request.param


@pytest.fixture
def float64():
    """Run the test with float64 as default dtype."""
    with default_dtype(torch.float64):
        yield torch.float64


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skips the test when it is absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not available")
    return path
