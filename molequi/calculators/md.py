"""Molecular dynamics with ASE drivers: trajectory, log, progress bar and energy-drift estimate."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.io.formats import filetype
from ase.io.trajectory import Trajectory
from ase.md import Langevin, MDLogger, VelocityVerlet
from ase.md.md import MolecularDynamics
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from tqdm import tqdm

ENSEMBLES = ("nve", "langevin")


@dataclass
class MDRecord:
    """Energies sampled every ``interval`` steps (step 0 included).

    Attributes:
        time_ps: ``[K]`` simulation time (ps).
        potential: ``[K]`` potential energy (eV).
        kinetic: ``[K]`` kinetic energy (eV).
        temperature: ``[K]`` instantaneous temperature (K).
        num_atoms: atoms in the system.
    """

    time_ps: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    temperature: np.ndarray
    num_atoms: int

    @property
    def total(self) -> np.ndarray:
        """``[K]`` total energy (eV)."""
        return self.potential + self.kinetic

    def drift(self) -> float:
        """Energy drift (meV/atom/ps): slope of a least-squares line through total energy vs time."""
        return energy_drift(self.time_ps, self.total, self.num_atoms)


def energy_drift(time_ps: np.ndarray, total_energy: np.ndarray, num_atoms: int) -> float:
    """Slope of the linear fit of ``total_energy`` (eV, ``[K]``) vs ``time_ps`` (``[K]``), in meV/atom/ps.

    Raises:
        ValueError: fewer than two samples.
    """
    if len(time_ps) < 2:
        raise ValueError("the energy drift needs at least two samples; run more steps or sample more often")
    slope = np.polyfit(np.asarray(time_ps, dtype=np.float64), np.asarray(total_energy, dtype=np.float64), 1)[0]
    return float(slope) * 1000.0 / num_atoms


def initialize_velocities(atoms: Atoms, temperature_K: float, seed: int) -> None:
    """Maxwell-Boltzmann velocities at ``temperature_K`` without net momentum (and, for
    non-periodic systems, without net rotation), unless ``atoms`` already has velocities."""
    if np.any(atoms.get_momenta()):
        return
    thermalize_momenta(atoms, temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    if not atoms.pbc.any() and len(atoms) > 2:
        ZeroRotation(atoms)


def make_dynamics(
    atoms: Atoms, ensemble: str, timestep_fs: float, temperature_K: float, friction_per_fs: float, seed: int
) -> MolecularDynamics:
    """An ASE driver: ``"nve"`` (velocity Verlet) or ``"langevin"`` (friction in 1/fs)."""
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    if ensemble == "langevin":
        return Langevin(
            atoms,
            timestep=timestep_fs * units.fs,
            temperature_K=temperature_K,
            friction=friction_per_fs / units.fs,
            fixcm=False,
            rng=np.random.default_rng(seed + 1),
        )
    raise ValueError(f"unknown ensemble {ensemble!r}; choose from {', '.join(ENSEMBLES)}")


@contextmanager
def replaced_on_exit(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` that is renamed onto ``path`` when the block exits.

    The rename also happens when the block raises (an MD run that blew up or was interrupted),
    so the frames written so far are kept; readers never see a half-written file at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
    finally:
        if tmp.exists():
            os.replace(tmp, path)


@contextmanager
def frame_writer(path: Path, fmt: str) -> Iterator[Callable[[Atoms], None]]:
    """A function writing one frame to ``path`` in ASE format ``fmt`` (file kept open meanwhile)."""
    if fmt == "traj":
        with Trajectory(path, "w") as trajectory:
            yield trajectory.write
    else:
        with open(path, "w") as file:
            yield lambda atoms: ase.io.write(file, atoms, format=fmt)


def run_md(
    atoms: Atoms,
    steps: int,
    trajectory: str | os.PathLike,
    log: str | os.PathLike,
    ensemble: str = "nve",
    timestep_fs: float = 0.5,
    temperature_K: float = 300.0,
    friction_per_fs: float = 0.01,
    interval: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> MDRecord:
    """Run MD on ``atoms`` (which must have a calculator), writing a trajectory and a log.

    Args:
        atoms: the system; velocities are drawn at ``temperature_K`` unless it already has some.
        steps: MD steps.
        trajectory: output file (any format ASE writes; ``.traj`` is ASE's binary trajectory),
            a frame every ``interval`` steps.
        log: ASE MD log (time, energies, temperature), a line every ``interval`` steps.
        ensemble: ``"nve"`` or ``"langevin"``.
        timestep_fs, temperature_K, friction_per_fs: driver settings (friction for Langevin).
        interval: steps between trajectory frames, log lines and energy samples.
        seed: seed of the initial velocities and the Langevin noise.
        progress: show a tqdm progress bar on stderr when it is a terminal (none in a redirected log).

    Returns:
        The energies sampled every ``interval`` steps.
    """
    if steps < 1 or interval < 1:
        raise ValueError(f"steps and interval must be positive, got steps={steps}, interval={interval}")
    initialize_velocities(atoms, temperature_K, seed)
    dyn = make_dynamics(atoms, ensemble, timestep_fs, temperature_K, friction_per_fs, seed)
    fmt = filetype(str(trajectory), read=False)
    samples: list[tuple[float, float, float, float]] = []

    with (
        replaced_on_exit(trajectory) as traj_tmp,
        frame_writer(traj_tmp, fmt) as write_frame,
        replaced_on_exit(log) as log_tmp,
        open(log_tmp, "w") as log_file,
    ):
        with tqdm(total=steps, unit="step", disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True) as bar:

            def sample() -> None:
                epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
                samples.append((dyn.get_time() / (1000 * units.fs), epot, ekin, atoms.get_temperature()))
                write_frame(atoms)
                bar.set_postfix(E_tot=f"{epot + ekin:.4f} eV", T=f"{samples[-1][3]:.0f} K", refresh=False)

            dyn.attach(sample, interval=interval)
            dyn.attach(MDLogger(dyn, atoms, log_file, header=True, stress=False, peratom=False), interval=interval)
            dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)
            dyn.run(steps)
    time_ps, potential, kinetic, temperature = (np.array(column) for column in zip(*samples))
    return MDRecord(time_ps, potential, kinetic, temperature, len(atoms))
