"""Fixtures of the training tests: the shipped demo dataset, a shared dataset cache and tiny run configs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
DEMO_DATA = REPOSITORY / "datasets" / "demo" / "emt_cu.extxyz"

#: A model small enough that an epoch on a dozen frames takes well under a second.
TINY_MODEL = {
    "r_max": 3.0, "num_layers": 1, "hidden_irreps": "4x0e+2x1o", "lmax": 1,
    "num_radial": 4, "radial_hidden": [8], "readout_hidden": 4,
}  # fmt: skip


@pytest.fixture(scope="session")
def repository() -> Path:
    """The checkout (``examples/``, ``datasets/``)."""
    return REPOSITORY


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """The shipped demo extxyz (EMT Cu/Au: clusters, bulk and small periodic cells)."""
    return DEMO_DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One dataset cache for the session, so that the demo file is processed once per cutoff."""
    return tmp_path_factory.mktemp("dataset-cache")


@pytest.fixture
def tiny_config(tmp_path, cache_dir):
    """``tiny_config(**sections)`` -> a raw config dict: float64, tiny model, 12/4/4 demo frames, in tmp_path/run."""

    def make(**changes: Any) -> dict[str, Any]:
        raw = {
            "data": {"path": str(DEMO_DATA), "train_size": 12, "val_size": 4, "test_size": 4, "cache_dir": str(cache_dir)},
            "model": dict(TINY_MODEL),
            "optim": {"lr": 0.005, "warmup_epochs": 0.5, "ema_decay": 0.9},
            "output_dir": str(tmp_path / "run"),
            "max_epochs": 2,
            "dtype": "float64",
            "device": "cpu",
            "batch_size": 4,
            "progress_bar": False,
        }
        for key, value in changes.items():
            if isinstance(value, dict):
                raw[key] = {**raw.get(key, {}), **value}
            else:
                raw[key] = value
        return copy.deepcopy(raw)

    return make
