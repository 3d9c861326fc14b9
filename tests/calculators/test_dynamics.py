"""ASE drivers with the calculator: NVE energy conservation, relaxations, Langevin and NPT."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.md import IsotropicMTKNPT, Langevin
from ase.optimize import BFGS, FIRE
from calc_systems import cu_bulk, cu_cluster

from molequi.calculators import MolequiCalculator
from molequi.calculators.md import initialize_velocities, make_dynamics

#: Bound on |drift| of the total energy in NVE (meV/atom/ps); measured -0.003 for this setup.
DRIFT_BOUND = 0.05
#: Bound on the largest deviation of the total energy from its start (meV/atom); measured 0.025.
DEVIATION_BOUND = 0.5


def test_nve_conserves_energy(trained_model):
    """32 Cu atoms, 300 K, velocity Verlet with 2 fs steps for 0.5 ps, model trained on the demo EMT data."""
    atoms = cu_bulk(rattle=0.05, seed=7)
    atoms.calc = MolequiCalculator(trained_model)
    initialize_velocities(atoms, 300.0, seed=0)
    dyn = make_dynamics(atoms, "nve", timestep_fs=2.0, temperature_K=300.0, friction_per_fs=0.0, seed=0)
    time_ps, total = [], []
    dyn.attach(
        lambda: (time_ps.append(dyn.get_time() / (1000 * units.fs)), total.append(atoms.get_total_energy())), interval=5
    )
    dyn.run(250)
    total = np.array(total)
    drift = np.polyfit(time_ps, total, 1)[0] * 1000 / len(atoms)  # meV/atom/ps
    deviation = np.abs(total - total[0]).max() * 1000 / len(atoms)
    assert atoms.get_temperature() > 50  # the atoms did move
    assert abs(drift) < DRIFT_BOUND, drift
    assert deviation < DEVIATION_BOUND, deviation


@pytest.mark.parametrize("optimizer", [BFGS, FIRE])
def test_optimizer_relaxes_distorted_cluster(trained_model, optimizer):
    atoms = cu_cluster(rattle=0.15, seed=8)
    atoms.calc = MolequiCalculator(trained_model)
    start = atoms.get_potential_energy()
    assert optimizer(atoms, logfile=None).run(fmax=0.01, steps=300)
    assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.01
    assert atoms.get_potential_energy() < start


def test_langevin_and_npt_run(trained_model):
    atoms = cu_bulk(seed=9)
    calc = MolequiCalculator(trained_model)
    atoms.calc = calc
    initialize_velocities(atoms, 300.0, seed=1)
    Langevin(
        atoms, 2 * units.fs, temperature_K=300, friction=0.02 / units.fs, fixcm=False, rng=np.random.default_rng(2)
    ).run(10)
    volume = atoms.get_volume()
    npt = IsotropicMTKNPT(
        atoms, 2 * units.fs, temperature_K=300, pressure_au=1.0 * units.GPa, tdamp=100 * units.fs, pdamp=500 * units.fs
    )
    npt.run(10)
    assert atoms.get_volume() != volume
    assert np.isfinite(atoms.get_stress()).all() and "stress" in calc.results
