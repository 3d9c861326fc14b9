"""MolequiCalculator: forces and stress against finite differences, units/properties, model handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from calc_systems import cu_bulk, cu_cluster

from molequi.calculators import MolequiCalculator
from molequi.models import save_model


def test_forces_match_finite_differences_molecule(committee_models):
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.1, seed=1)
    atoms.calc = MolequiCalculator(committee_models[0], dtype="float64")
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-2  # a meaningful comparison
    np.testing.assert_allclose(forces, calculate_numerical_forces(atoms, eps=1e-4), rtol=0, atol=1e-6)


def test_forces_and_stress_match_finite_differences_periodic(trained_model):
    atoms = cu_bulk(rattle=0.05, strain=0.01, seed=3)
    atoms.calc = MolequiCalculator(trained_model, dtype=torch.float64)
    forces, stress = atoms.get_forces(), atoms.get_stress()
    assert stress.shape == (6,) and np.abs(stress).max() > 1e-4
    np.testing.assert_allclose(forces, calculate_numerical_forces(atoms, eps=1e-4), rtol=0, atol=1e-6)
    np.testing.assert_allclose(stress, calculate_numerical_stress(atoms, eps=1e-5), rtol=0, atol=1e-6)


def test_properties_and_units(trained_model):
    calc = MolequiCalculator(trained_model)
    cluster = cu_cluster()
    cluster.calc = calc
    energy = cluster.get_potential_energy()
    assert isinstance(energy, float) and cluster.get_potential_energy(force_consistent=True) == energy
    assert cluster.get_forces().shape == (13, 3) and cluster.get_forces().dtype == np.float64
    with pytest.raises(PropertyNotImplementedError):
        cluster.get_stress()  # no stress without a periodic cell
    assert "energy_std" not in calc.results  # a single model has no spread


def test_model_file_dtype_and_caller_model_untouched(trained_model, tmp_path):
    before = {name: (p.dtype, p.requires_grad) for name, p in trained_model.named_parameters()}
    path = tmp_path / "model.pt"
    save_model(trained_model, path)
    atoms = cu_bulk(seed=4)
    atoms.calc = MolequiCalculator(trained_model)
    reference = atoms.get_forces()
    from_file = MolequiCalculator(str(path))
    np.testing.assert_allclose(from_file.get_forces(atoms), reference, rtol=0, atol=1e-12)
    single = MolequiCalculator(trained_model, dtype="float32")
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.get_forces(atoms), reference, atol=1e-4)
    assert {name: (p.dtype, p.requires_grad) for name, p in trained_model.named_parameters()} == before
    with pytest.raises(ValueError, match="dtype"):
        MolequiCalculator(path, dtype="int64")
