"""Console helpers: metric tables whose columns never run together, the energy-unit hint."""

from __future__ import annotations

import re

import numpy as np
import pytest

from molequi.data.units import ENERGY_UNITS
from molequi.training.report import UNIT_HINT_RATIO, format_metrics, unit_hint


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e5])
def test_table_columns_stay_apart_and_aligned(scale):
    metrics = {"energy_mae": 92851.164603 * scale, "energy_rmse": 92851.164682 * scale,
               "forces_mae": 0.0123, "forces_rmse": 0.0234}  # fmt: skip
    header, energy, forces = format_metrics(metrics).splitlines()
    assert header.split() == ["MAE", "RMSE"]
    assert energy.split() == ["energy", f"{1000 * metrics['energy_mae']:.3f}", f"{1000 * metrics['energy_rmse']:.3f}", "meV"]
    assert forces.split() == ["forces", "12.300", "23.400", "meV/Å"]
    ends = [m.end() for m in re.finditer(r"\S+", header)]  # numbers right-aligned under MAE and RMSE
    for line in (energy, forces):
        assert [m.end() for m in re.finditer(r"\d\S*", line)] == ends


def test_table_has_rows_for_the_molecular_targets():
    metrics = {"dipole_norm_mae": 0.05, "dipole_norm_rmse": 0.08, "intensive_mae": 0.1234, "intensive_rmse": 0.2}
    _, dipole, intensive = format_metrics(metrics).splitlines()
    assert dipole.split() == ["dipole", "norm", "0.050", "0.080", "D"]
    assert intensive.split() == ["intensive", "123.400", "200.000", "meV"]


def test_unit_hint_names_the_likely_unit():
    rng = np.random.default_rng(0)
    predicted = -4.0 + 0.05 * rng.standard_normal(50)  # eV/atom
    as_read = predicted / ENERGY_UNITS["kcal/mol"]  # the same energies in kcal/mol, read as eV
    hint = unit_hint(as_read, predicted, "eV")
    assert hint is not None and "not in eV" in hint and hint.endswith("try --energy-unit kcal/mol")
    assert unit_hint(predicted, predicted, "kcal/mol") is None  # read in the right unit


def test_no_hint_for_errors_within_the_spread():
    rng = np.random.default_rng(1)
    reference = -4.0 + 0.05 * rng.standard_normal(50)
    assert unit_hint(reference, reference + 0.01 * rng.standard_normal(50), "eV") is None
    # far off, but not by a unit's factor: a hint without a guess
    hint = unit_hint(reference, reference + 2 * UNIT_HINT_RATIO * reference.std(), "eV")
    assert hint is not None and "try" not in hint
