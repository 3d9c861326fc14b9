"""Shared by ``md_speed.py`` and ``md_speed_mace.py`` (ASE only, so it runs in either venv)."""

from __future__ import annotations

import time

import numpy as np
from ase import Atoms, units
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

TIMESTEP_FS = 0.5
TEMPERATURE_K = 300.0


def md_steps_per_second(atoms: Atoms, steps: int, warmup: int, repeats: int = 1, seed: int = 0) -> list[float]:
    """Steps per second of ASE velocity Verlet on ``atoms`` (calculator attached) after ``warmup`` steps.

    Velocities are drawn at 300 K with ``seed``; the time step is 0.5 fs. The ``steps`` are timed
    ``repeats`` times in a row (one rate per repeat), so that a shared machine's load spikes show.
    """
    thermalize_momenta(atoms, TEMPERATURE_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=TIMESTEP_FS * units.fs)
    dyn.run(warmup)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        dyn.run(steps)
        rates.append(steps / (time.perf_counter() - start))
    return rates
