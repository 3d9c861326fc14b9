"""Structures, inputs and the tiny model's settings for the deployment tests."""

from __future__ import annotations

import torch
from ase import Atoms
from ase.build import bulk, molecule

from molequi.deploy.export import graph_inputs

SPECIES = (1, 6, 8)
R_MAX = 3.0
TINY = {"hidden_irreps": "4x0e+2x1o+2x2e", "num_layers": 1, "radial_hidden": (8,), "readout_hidden": 4}
#: Reference energies of real elements, so that the energy check is relative to a realistic total.
E0 = {1: -13.6, 6: -1029.0, 8: -2041.0}


def structure(name: str, seed: int = 0) -> Atoms:
    """A rattled molecule (``"CH3CH2OH"``, ``"C6H6"``, ...) or ``"box"``: a periodic, sheared C/H/O cell."""
    if name == "box":
        atoms = bulk("C", "diamond", a=3.6, cubic=True)
        atoms.numbers[[1, 5]] = [8, 1]
        atoms.cell[1, 0] += 0.3
    else:
        atoms = molecule(name)
    atoms.rattle(0.05, seed=seed)
    return atoms


def inputs(name: str, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """The calculator's model input of :func:`structure` ``(name)``."""
    return graph_inputs(structure(name), R_MAX, dtype, torch.device("cpu"))
