"""Generate molequi's demo dataset with ASE's EMT potential (deterministic for a given seed).

Writes ``demo/emt_cu.extxyz`` (energy eV, forces eV/A, stress eV/A^3 on periodic
frames, ``config_type`` in ``info``) and ``demo/emt_isolated_atoms.extxyz`` (one Cu and
one Au atom, for per-element reference energies):

* ``cluster``: Cu13 / Cu(13-k)Au(k) icosahedra, Langevin MD at 800 K (non-periodic);
* ``bulk``: 32-atom fcc Cu and L1_2 Cu3Au supercells, rattled and strained (periodic, stress);
* ``small_cell``: 1-atom and 4-atom fcc Cu cells, strained and rattled, in which every
  atom sees its own periodic images within a 5 A cutoff (periodic, stress).

Usage: ``python datasets/make_demo_dataset.py [--seed 0] [--out datasets/demo]``
(the committed files were made with seed 0 and ASE 3.29.0; other ASE versions may
differ in the last digits).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

A_CU = 3.61  # fcc lattice constant of Cu, A


def labelled(atoms: Atoms, config_type: str) -> Atoms:
    """A copy of ``atoms`` carrying its EMT energy, forces (and stress if periodic)."""
    frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell if atoms.pbc.any() else None, pbc=atoms.pbc)
    frame.calc = EMT()
    results = {"energy": frame.get_potential_energy(), "forces": frame.get_forces()}
    if frame.pbc.all():
        results["stress"] = frame.get_stress()
    frame.calc = SinglePointCalculator(frame, **results)
    frame.info["config_type"] = config_type
    return frame


def clusters(rng: np.random.Generator, n_au_values=(0, 1, 2, 3, 4, 6), frames_each: int = 20) -> list[Atoms]:
    """Langevin MD snapshots of 13-atom icosahedra with ``n_au`` random Au atoms."""
    out = []
    for n_au in n_au_values:
        atoms = Icosahedron("Cu", noshells=2, latticeconstant=A_CU)
        atoms.symbols[rng.choice(len(atoms), n_au, replace=False)] = "Au"
        atoms.pbc = False
        atoms.set_constraint(FixCom())
        atoms.calc = EMT()
        thermalize_momenta(atoms, temperature_K=800, rng=rng)
        md = Langevin(atoms, timestep=2 * units.fs, temperature_K=800, friction=0.02, fixcm=False, rng=rng)
        md.run(100)  # equilibrate
        for _ in range(frames_each):
            md.run(10)
            out.append(labelled(atoms, "cluster"))
    return out


def strained(atoms: Atoms, rng: np.random.Generator, max_strain: float, rattle: float) -> Atoms:
    """``atoms`` with a random symmetric cell strain and Gaussian displacements."""
    atoms = atoms.copy()
    eps = rng.uniform(-max_strain, max_strain, (3, 3))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + (eps + eps.T) / 2), scale_atoms=True)
    atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
    return atoms


def bulk_frames(rng: np.random.Generator, n_cu: int = 50, n_cu3au: int = 20) -> list[Atoms]:
    cu = bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(2)
    cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)
    cu3au.symbols[0] = "Au"  # L1_2 ordering
    cu3au = cu3au.repeat(2)
    frames = [labelled(strained(cu, rng, 0.03, 0.08), "bulk") for _ in range(n_cu)]
    return frames + [labelled(strained(cu3au, rng, 0.03, 0.08), "bulk") for _ in range(n_cu3au)]


def small_cell_frames(rng: np.random.Generator, n_primitive: int = 10, n_cubic: int = 20) -> list[Atoms]:
    primitive = bulk("Cu", "fcc", a=A_CU)
    cubic = bulk("Cu", "fcc", a=A_CU, cubic=True)
    frames = [labelled(strained(primitive, rng, 0.04, 0.0), "small_cell") for _ in range(n_primitive)]
    return frames + [labelled(strained(cubic, rng, 0.03, 0.05), "small_cell") for _ in range(n_cubic)]


def isolated_atoms() -> list[Atoms]:
    return [labelled(Atoms(symbol), "isolated_atom") for symbol in ("Cu", "Au")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "demo")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    frames = clusters(rng) + bulk_frames(rng) + small_cell_frames(rng)
    args.out.mkdir(parents=True, exist_ok=True)
    ase.io.write(args.out / "emt_cu.extxyz", frames, format="extxyz")
    ase.io.write(args.out / "emt_isolated_atoms.extxyz", isolated_atoms(), format="extxyz")
    print(f"wrote {len(frames)} frames to {args.out / 'emt_cu.extxyz'}")


if __name__ == "__main__":
    main()
