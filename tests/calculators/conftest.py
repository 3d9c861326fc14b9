"""Fixtures: a small model trained briefly on the demo EMT data, untrained models for committees.

``trained_model`` uses the training API (``molequi.training.train``) with the demo config on
40 frames of ``datasets/demo/emt_cu.extxyz`` (EMT Cu/Au), enough for physical dynamics.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from calc_systems import R_MAX, SMALL, small_model

from molequi.models import AtomisticModel, EquivariantPotential, load_model
from molequi.training import load_config, train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def trained_model(one_thread: None, tmp_path_factory: pytest.TempPathFactory) -> AtomisticModel:
    """A small Cu/Au model (float64) trained for 6 epochs on 40 frames of the demo EMT dataset."""
    run = tmp_path_factory.mktemp("demo_training")
    overrides = [
        f"data.path={REPO / 'datasets/demo/emt_cu.extxyz'}",
        "data.train_size=40",
        "data.val_size=8",
        "data.test_size=8",
        f"data.cache_dir={run / 'cache'}",
        f"model.hidden_irreps={SMALL['hidden_irreps']}",
        f"model.num_layers={SMALL['num_layers']}",
        f"model.radial_hidden={list(SMALL['radial_hidden'])}",
        f"model.readout_hidden={SMALL['readout_hidden']}",
        f"model.r_max={R_MAX}",
        "max_epochs=6",
        "optim.warmup_epochs=0",
        "optim.ema_decay=0.9",
        "dtype=float64",
        "device=cpu",
        f"output_dir={run / 'run'}",
    ]
    train(load_config(REPO / "examples/configs/demo.yaml", overrides))
    return load_model(run / "run" / "model.pt")


@pytest.fixture(scope="package")
def committee_models() -> list[EquivariantPotential]:
    """Three untrained small models for H, C, O and Cu that differ only in their initial weights."""
    return [small_model([1, 6, 8, 29], seed=seed, shift=-1.0) for seed in range(3)]
