"""Bad structures raise a clear ValueError in the calculator and in batched prediction."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from calc_systems import cu_bulk, cu_cluster

from molequi.calculators import MolequiCalculator


def _unknown_element():
    atoms = cu_cluster()
    atoms.numbers[3] = 47  # silver: not in the model
    return atoms


def _overlapping():
    atoms = cu_cluster()
    atoms.positions[1] = atoms.positions[0] + [0.05, 0.0, 0.0]
    return atoms


def _nan_position():
    atoms = cu_cluster()
    atoms.positions[2, 1] = np.nan
    return atoms


def _overlapping_periodic_image():
    atoms = cu_bulk()
    atoms.positions[5] = atoms.positions[0] + atoms.cell[0] + [0.0, 0.03, 0.0]
    return atoms


BAD = {
    "unknown element": (_unknown_element, r"element\(s\) Ag \(Z=47\) not among the model's species \[Cu, Au\]"),
    "overlapping atoms": (_overlapping, r"atoms 0 and 1 are 0.0500 A apart \(closer than 0.1 A\)"),
    "overlapping periodic image": (_overlapping_periodic_image, r"atoms 0 and 5 are 0.0300 A apart \(closer than 0.1"),
    "NaN position": (_nan_position, r"positions contains NaN or inf \(at entry \(2, 1\)\)"),
    "empty": (lambda: Atoms(), "no atoms"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_calculator_raises(trained_model, case):
    make, message = BAD[case]
    atoms = make()
    atoms.calc = MolequiCalculator(trained_model)
    with pytest.raises(ValueError, match=message):
        atoms.get_forces()


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_predict_raises_naming_the_structure(trained_model, case):
    make, message = BAD[case]
    calc = MolequiCalculator(trained_model)
    with pytest.raises(ValueError, match=f"structure 1.*{message}"):
        calc.predict([cu_cluster(), make()])


def test_bad_batch_size(trained_model):
    with pytest.raises(ValueError, match="batch_size"):
        MolequiCalculator(trained_model).predict([cu_cluster()], batch_size=0)
