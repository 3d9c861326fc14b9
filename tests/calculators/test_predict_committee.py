"""Batched prediction equals per-structure calls; committee mean and spread equal manual ones."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from calc_systems import cu_bulk, cu_cluster, small_model

from molequi.calculators import MolequiCalculator


def _structures():
    """Periodic and non-periodic structures of several sizes, interleaved."""
    water, ethanol = molecule("H2O"), molecule("CH3CH2OH")
    ethanol.rattle(0.05, seed=1)
    return [water, cu_bulk(seed=1), ethanol, cu_cluster(seed=2), cu_bulk(strain=0.02, seed=3)]


@pytest.mark.parametrize("num_models", [1, 3], ids=["single", "committee"])
def test_predict_equals_per_structure_calls(committee_models, num_models):
    calc = MolequiCalculator(committee_models[:num_models])
    structures = _structures()
    batched = calc.predict(structures, batch_size=2)
    assert len(batched) == len(structures)
    for atoms, result in zip(structures, batched):
        calc.calculate(atoms, ["energy", "forces"] + (["stress"] if atoms.pbc.all() else []))
        assert set(result) == set(calc.results)
        for key, value in calc.results.items():
            np.testing.assert_allclose(result[key], value, rtol=1e-10, atol=1e-10, err_msg=key)
    assert ("stress" in batched[1]) and ("stress" not in batched[0])
    assert calc.predict([]) == []


def test_committee_mean_and_std_equal_manual(committee_models):
    atoms = cu_bulk(seed=4)
    members = [MolequiCalculator(m) for m in committee_models]
    energies = np.array([c.get_potential_energy(atoms) for c in members])
    forces = np.stack([c.get_forces(atoms) for c in members])
    stresses = np.stack([c.get_stress(atoms) for c in members])
    committee = MolequiCalculator(committee_models)
    atoms.calc = committee
    assert atoms.get_potential_energy() == pytest.approx(energies.mean(), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), forces.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), stresses.mean(axis=0), rtol=0, atol=1e-12)
    results = committee.results
    assert results["energy_std"] == pytest.approx(energies.std(), abs=1e-12) and results["energy_std"] > 0
    np.testing.assert_allclose(results["forces_std"], forces.std(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(results["stress_std"], stresses.std(axis=0), rtol=0, atol=1e-12)
    assert committee.get_property("energy_std", atoms) == results["energy_std"]


def test_committee_needs_one_cutoff(committee_models):
    with pytest.raises(ValueError, match="cutoff"):
        MolequiCalculator([committee_models[0], small_model([1, 6, 8, 29], seed=9, r_max=3.0)])
    with pytest.raises(ValueError, match="no model"):
        MolequiCalculator([])
