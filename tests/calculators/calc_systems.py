"""Small test systems and models for the calculator tests (imported by the tests and their conftest)."""

from __future__ import annotations

import torch
from ase import Atoms
from ase.build import bulk
from ase.cluster import Icosahedron

from molequi.dtypes import default_dtype
from molequi.models import EquivariantPotential

R_MAX = 4.0
SMALL = {"num_layers": 2, "hidden_irreps": "8x0e+4x1o", "lmax": 2, "radial_hidden": (16,), "readout_hidden": 8}


def small_model(species: list[int], seed: int, **overrides) -> EquivariantPotential:
    """An untrained float64 model with the small test architecture."""
    with default_dtype(torch.float64):
        torch.manual_seed(seed)
        return EquivariantPotential(species, **{"r_max": R_MAX, **SMALL, **overrides})


def cu_bulk(rattle: float = 0.05, strain: float = 0.0, seed: int = 0) -> Atoms:
    """32-atom periodic fcc copper, rattled and isotropically strained."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.set_cell(atoms.cell * (1 + strain), scale_atoms=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


def cu_cluster(rattle: float = 0.1, seed: int = 0) -> Atoms:
    """A rattled 13-atom copper icosahedron (non-periodic)."""
    atoms = Icosahedron("Cu", 2)
    atoms.rattle(rattle, seed=seed)
    return atoms
