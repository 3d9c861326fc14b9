"""Models, structures and a device wrapper for the CUDA tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from ase.build import bulk, molecule

from molequi.dtypes import default_dtype
from molequi.models import EquivariantPotential

#: Every test module here: marked ``cuda`` and skipped without a GPU.
CUDA = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on one)"),
]
SMALL = {"hidden_irreps": "8x0e+4x1o+4x2e", "num_layers": 2, "radial_hidden": (16,), "readout_hidden": 8}
SPECIES = (1, 6, 8, 11, 17)


def small_model(
    dtype: torch.dtype = torch.float64, seed: int = 0, species: tuple[int, ...] = SPECIES, **options
) -> EquivariantPotential:
    """An untrained small potential (default for H, C, O, Na and Cl; CPU, eval mode)."""
    with default_dtype(dtype):
        torch.manual_seed(seed)
        return EquivariantPotential(species, r_max=3.0, **{**SMALL, **options}).eval()


def ethanol(dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """A rattled ethanol molecule as ``{"z", "pos"}`` on the CPU."""
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=0)
    return {"z": torch.tensor(atoms.numbers), "pos": torch.tensor(atoms.positions, dtype=dtype)}


def salt_crystal(dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """A rattled, sheared periodic NaCl cell (8 atoms) with ``cell`` and ``pbc``, on the CPU."""
    atoms = bulk("NaCl", "rocksalt", a=5.0) * (2, 1, 1)
    atoms.rattle(0.1, seed=1)
    atoms.cell[0, 1] += 0.3
    return {
        "z": torch.tensor(atoms.numbers),
        "pos": torch.tensor(atoms.positions, dtype=dtype),
        "cell": torch.tensor(atoms.cell[:], dtype=dtype)[None],
        "pbc": torch.ones(1, 3, dtype=torch.bool),
    }


def on_device(model: torch.nn.Module, device: torch.device) -> Callable[..., dict[str, torch.Tensor]]:
    """``model`` moved to ``device``, called with CPU inputs and returning CPU outputs.

    The symmetry and finite-difference checks of :mod:`molequi.testing` then transform inputs on
    the CPU, in float64 there, while every model evaluation runs on ``device``.
    """
    model = model.to(device)

    def call(data: dict[str, torch.Tensor], **options) -> dict[str, torch.Tensor]:
        out = model({key: value.to(device) for key, value in data.items()}, **options)
        return {key: value.detach().cpu() for key, value in out.items()}

    return call
