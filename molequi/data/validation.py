"""Checks on input structures; every failure is a :class:`ValueError` naming where it occurred."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from ase.data import chemical_symbols

#: Two atoms closer than this (Angstrom) are rejected as a broken structure.
MIN_DISTANCE = 0.1
#: Largest atomic number ASE knows.
MAX_ATOMIC_NUMBER = len(chemical_symbols) - 1


def check_numbers(
    numbers: np.ndarray, where: str, elements: Iterable[int] | None = None, known_as: str = "the supported elements"
) -> None:
    """Reject unknown elements, or elements outside ``elements`` when that is given.

    Args:
        numbers: [N] atomic numbers.
        where: prefix for the error message, e.g. ``"data.xyz, frame 3 (0-based)"``.
        elements: atomic numbers a model was trained on (None: any real element).
        known_as: what ``elements`` are, for the message (e.g. ``"the model's species"``).
    """
    numbers = np.asarray(numbers)
    bad = np.flatnonzero((numbers < 1) | (numbers > MAX_ATOMIC_NUMBER))
    if bad.size:
        raise ValueError(f"{where}: atom {bad[0]} has unknown element (atomic number {numbers[bad[0]]})")
    if elements is not None:
        allowed = set(int(e) for e in elements)
        unknown = sorted(set(numbers.tolist()) - allowed)
        if unknown:
            names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in unknown)
            known = ", ".join(chemical_symbols[z] for z in sorted(allowed))
            raise ValueError(f"{where}: element(s) {names} not among {known_as} [{known}]")


def check_finite(name: str, values: np.ndarray, where: str) -> None:
    """Reject NaN or infinite entries of ``values`` (positions, cell or a target)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        row = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(f"{where}: {name} contains NaN or inf (at entry {tuple(int(k) for k in row)})")


def check_min_distance(distances: np.ndarray, pairs: np.ndarray, where: str) -> None:
    """Reject a structure with two atoms (or an atom and an image) closer than :data:`MIN_DISTANCE`.

    Args:
        distances: [E] edge lengths of the structure's radius graph (Angstrom).
        pairs: [2, E] atom indices of the edges (local to the structure).
        where: prefix for the error message.
    """
    if distances.size and distances.min() < MIN_DISTANCE:
        k = int(distances.argmin())
        a, b = int(pairs[0, k]), int(pairs[1, k])
        what = f"atoms {min(a, b)} and {max(a, b)} are" if a != b else f"atom {a} and its periodic image are"
        raise ValueError(f"{where}: {what} {distances[k]:.4f} A apart (closer than {MIN_DISTANCE} A)")


def check_cell(cell: np.ndarray, pbc: np.ndarray, where: str) -> None:
    """Reject lattice vectors of periodic directions that are zero or linearly dependent."""
    periodic = np.asarray(cell, dtype=np.float64)[np.asarray(pbc, dtype=bool)]
    if len(periodic) and np.linalg.matrix_rank(periodic, tol=1e-8) < len(periodic):
        raise ValueError(f"{where}: the lattice vectors of the periodic directions are zero or linearly dependent")
