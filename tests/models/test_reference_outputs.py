"""Saved model files keep giving the numbers they gave when they were written (float64, 1e-12 relative).

The files in ``tests/models/reference/`` were written by ``make_reference_outputs.py`` in model-file
format 1 (convolutions with their own edge embeddings): ``potential_gate`` on c4425da, before the
EquivariantConv split; ``nbody_hierarchy`` again on 4e816d0 (the new NBodyNetwork hierarchy, whose
former weights it refuses) with the convolution of 83aba1e, before the split. So this test guards
refactors that must not change any number and the upgrade of older model files on load.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from molequi.models import load_model

from make_reference_outputs import MOLECULES, REFERENCE, structure

RELATIVE = 1e-12
RECORD = json.loads((REFERENCE / "outputs.json").read_text())


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize("name", sorted(RECORD))
def test_saved_models_give_the_reference_outputs(name):
    path: Path = REFERENCE / f"{name}.pt"
    assert path.stat().st_size < 300_000
    model = load_model(path)
    assert next(model.parameters()).dtype == torch.float64
    for molecule_name in MOLECULES:
        out = model(structure(molecule_name))
        expected = RECORD[name][molecule_name]
        for key in ("energy", "forces"):
            reference = torch.tensor(expected[key], dtype=torch.float64)
            assert out[key].shape == reference.shape
            error = _relative_error(out[key].detach(), reference)
            assert error <= RELATIVE, f"{name} on {molecule_name}: {key} differs by {error:.2e} (relative)"
