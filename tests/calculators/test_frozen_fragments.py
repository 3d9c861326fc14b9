"""MolequiCalculator freezes an N-body network's fragments at the first call (continuous MD energies)."""

from __future__ import annotations

import numpy as np
import torch
from ase.build import molecule

from molequi.calculators import MolequiCalculator
from molequi.dtypes import default_dtype
from molequi.models import NBodyNetwork

SMALL = {"num_levels": 2, "hidden_irreps": "4x0e+4x1o", "lmax": 1, "edge_channels": 4, "radial_hidden": (8,), "readout_hidden": 4}


def _energy_across_the_bond_cutoff(calc: MolequiCalculator, reset: bool) -> float:
    """Largest second difference of the energy while an O-H bond of ethanol stretches through its bond cutoff (1.26 Å).

    On a smooth curve sampled every 0.005 Å a second difference is of order E'' h^2 (tiny); a jump
    of the energy shows up whole, whatever the slope of the curve.
    """
    atoms = molecule("CH3CH2OH")
    oxygen = int(np.flatnonzero(atoms.numbers == 8)[0])
    hydrogen = int(np.argmin([atoms.get_distance(oxygen, i) if z == 1 else 9.0 for i, z in enumerate(atoms.numbers)]))
    atoms.calc = calc
    energies = []
    for d in np.linspace(1.20, 1.32, 25):
        atoms.set_distance(oxygen, hydrogen, d, fix=0)
        if reset:
            calc.reset_fragments()
        energies.append(atoms.get_potential_energy())
    return float(np.abs(np.diff(energies, n=2)).max())


def test_fragments_frozen_at_the_first_call_keep_the_energy_continuous():
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        model = NBodyNetwork([1, 6, 8], r_max=3.0, **SMALL)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
            model.atom_down.message_gain.fill_(2.0)  # it starts at 0 (ReZero): open the top-down path wide
    frozen = _energy_across_the_bond_cutoff(MolequiCalculator(model, skin=0.0), reset=False)
    fresh = _energy_across_the_bond_cutoff(MolequiCalculator(model, skin=0.0), reset=True)
    # 0.005 Å steps: a smooth energy bends by little; a new decomposition jumps
    assert frozen < 0.2 * fresh, (frozen, fresh)
    assert fresh > 1e-3
