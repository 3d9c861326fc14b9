"""Readers of the three QM9 distributions, all yielding molecules in raw QM9 units.

* the original release ``dsgdb9nsd.xyz.tar.bz2`` (Ramakrishnan et al. 2014), one xyz
  file per molecule whose second line holds the properties;
* the CSV tables of the ``qm9pack`` package (``qm9_part{1,2,3}.csv``);
* an npz in the layout of ``convert_qm9pack.py`` (``gdb_idx, offsets, Z, R`` and one
  array per property).
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import itertools
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers

#: QM9 properties in the order of the xyz property line, with their raw units.
RAW_UNITS = {
    "A": "GHz", "B": "GHz", "C": "GHz", "mu": "D", "alpha": "bohr^3", "homo": "Ha", "lumo": "Ha", "gap": "Ha",
    "r2": "bohr^2", "zpve": "Ha", "U0": "Ha", "U": "Ha", "H": "Ha", "G": "Ha", "Cv": "cal/mol/K",
}  # fmt: skip
PROPERTIES = tuple(RAW_UNITS)

#: qm9pack CSV column of each property.
QM9PACK_COLUMNS = {
    "A": "RotA_GHz", "B": "RotB_GHz", "C": "RotC_GHz", "mu": "Dipole_debye", "alpha": "Polarizability_bohr3",
    "homo": "HOMO_au", "lumo": "LUMO_au", "gap": "HOMO_LUMO_gap_au", "r2": "R2_bohr2", "zpve": "ZPVE_au",
    "U0": "InternalEnergy_0K_au", "U": "InternalEnergy_298K_au", "H": "Enthalphy_298K_au",
    "G": "GibbsFreeEnergy_298K_au", "Cv": "Heatcapacity_Cv_cal_mol_K",
}  # fmt: skip
QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


@dataclass
class QM9Molecule:
    """One QM9 molecule: index (1..133,885), numbers [N], positions [N, 3] (A), properties [15] (raw units)."""

    qm9_id: int
    numbers: np.ndarray
    positions: np.ndarray
    properties: np.ndarray


def _number(text: str) -> float:
    """Parse a QM9 number, which may use Mathematica's ``*^`` exponent notation."""
    return float(text.replace("*^", "e"))


def parse_qm9_xyz(text: str, name: str) -> QM9Molecule:
    """Parse one xyz file of the original release.

    Raises:
        ValueError: naming the file when the content does not follow the QM9 layout.
    """
    lines = text.splitlines()
    try:
        n = int(lines[0])
        fields = lines[1].split()
        if fields[0] != "gdb" or len(fields) != 2 + len(PROPERTIES):
            raise ValueError(f"property line has {len(fields)} fields, expected 'gdb' + {1 + len(PROPERTIES)}")
        atoms = [line.split() for line in lines[2 : 2 + n]]
        numbers = np.array([atomic_numbers[a[0]] for a in atoms], dtype=np.int64)
        positions = np.array([[_number(x) for x in a[1:4]] for a in atoms], dtype=np.float64)
        properties = np.array([_number(x) for x in fields[2:]], dtype=np.float64)
        if positions.shape != (n, 3):
            raise ValueError(f"expected {n} atom lines")
        return QM9Molecule(int(fields[1]), numbers, positions, properties)
    except (IndexError, KeyError, ValueError) as err:
        raise ValueError(f"{name}: not a QM9 xyz file: {err}") from None


def read_tarball(path: Path) -> Iterator[QM9Molecule]:
    """Molecules of ``dsgdb9nsd.xyz.tar.bz2`` in archive order (streamed)."""
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".xyz"):
                text = tar.extractfile(member).read().decode()
                yield parse_qm9_xyz(text, f"{path}:{member.name}")


def qm9pack_data_dir() -> Path | None:
    """The ``data`` folder of an installed ``qm9pack`` (found without importing it)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if (folder / QM9PACK_FILES[0]).exists() else None


def read_qm9pack(folder: Path) -> Iterator[QM9Molecule]:
    """Molecules of the qm9pack CSV tables, in QM9 index order (streamed)."""
    csv.field_size_limit(1 << 30)
    for part in QM9PACK_FILES:
        path = folder / part
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file (expected the qm9pack CSV tables {QM9PACK_FILES})")
        with open(path, newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    elements = ast.literal_eval(row["Elements"])
                    xyz = ast.literal_eval(row["XYZ_Ang"].replace("*^", "e"))
                    yield QM9Molecule(
                        int(row["Index"]),
                        np.array([atomic_numbers[e] for e in elements], dtype=np.int64),
                        np.array(xyz, dtype=np.float64).reshape(-1, 3),
                        np.array([_number(row[QM9PACK_COLUMNS[p]]) for p in PROPERTIES], dtype=np.float64),
                    )
                except (KeyError, ValueError, SyntaxError) as err:
                    raise ValueError(f"{path}, line {line}: not a qm9pack row: {err!r}") from None


def read_npz(path: Path) -> Iterator[QM9Molecule]:
    """Molecules of an npz written by ``convert_qm9pack.py`` (e.g. ``qm9_25k.npz``)."""
    with np.load(path) as npz:
        missing = {"gdb_idx", "offsets", "Z", "R", *PROPERTIES} - set(npz.files)
        if missing:
            raise ValueError(f"{path}: not a QM9 npz, missing keys {sorted(missing)}")
        ids, offsets, numbers, positions = npz["gdb_idx"], npz["offsets"], npz["Z"], npz["R"]
        properties = np.stack([npz[p] for p in PROPERTIES], axis=1).astype(np.float64)
    for k, (lo, hi) in enumerate(itertools.pairwise(offsets)):
        yield QM9Molecule(
            int(ids[k]), numbers[lo:hi].astype(np.int64), positions[lo:hi].astype(np.float64), properties[k]
        )


def read_source(path: Path) -> Iterator[QM9Molecule]:
    """Dispatch on the kind of ``path``: npz file, tar archive or qm9pack CSV folder.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if it is none of the three.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_qm9pack(path)
    if path.suffix == ".npz":
        return read_npz(path)
    if tarfile.is_tarfile(path):
        return read_tarball(path)
    raise ValueError(f"{path}: unknown QM9 source; expected dsgdb9nsd.xyz.tar.bz2, a qm9pack data folder or a QM9 npz")
