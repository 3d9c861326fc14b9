"""One frame as plain numpy arrays, and its extraction from :class:`ase.Atoms`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

from molequi.data import keys


@dataclass
class Structure:
    """A frame before graph construction (float64, targets already in eV-based units).

    Attributes:
        numbers: [N] atomic numbers.
        positions: [N, 3] Angstrom.
        cell: [3, 3] lattice vectors as rows (zeros when no direction is periodic).
        pbc: [3] bool.
        targets: ``energy`` (scalar, eV), ``forces`` ([N, 3], eV/A), ``stress``
            ([3, 3], eV/A^3) and extra per-graph properties, each where present.
        where: location for error messages, e.g. ``"train.xyz, frame 12"``.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    where: str = "structure"

    @classmethod
    def create(
        cls,
        numbers: Any,
        positions: Any,
        cell: Any = None,
        pbc: Any = False,
        targets: Mapping[str, Any] | None = None,
        where: str = "structure",
    ) -> Structure:
        """Build from array-likes, zeroing the cell of a fully non-periodic frame."""
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        cell = np.zeros((3, 3)) if cell is None or not pbc.any() else np.asarray(cell, dtype=np.float64).reshape(3, 3)
        return cls(
            numbers=np.asarray(numbers, dtype=np.int64).reshape(-1),
            positions=np.asarray(positions, dtype=np.float64).reshape(-1, 3),
            cell=cell,
            pbc=pbc,
            targets={k: np.asarray(v, dtype=np.float64) for k, v in (targets or {}).items()},
            where=where,
        )


def structure_from_atoms(
    atoms: Atoms,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    info_keys: Sequence[str] = (),
    energy_factor: float = 1.0,
    where: str = "atoms",
) -> Structure:
    """Read positions and targets of one :class:`ase.Atoms`.

    A key that is given must be found, in this order, in the calculator results,
    ``atoms.info``, ``atoms.arrays`` (forces) or, for rows read from an ASE database,
    its key-value pairs and data; otherwise a :class:`ValueError` names the frame.
    A key left as None takes the calculator's ``energy`` / ``forces`` / ``stress`` if the
    frame has a calculator with that result, and nothing otherwise.

    Args:
        atoms: the frame.
        energy_key, forces_key, stress_key: where to find the targets (see above).
        info_keys: extra per-graph properties copied from ``atoms.info`` (unconverted).
        energy_factor: multiplies energy, forces and stress (unit conversion to eV).
        where: location for error messages.
    """
    targets: dict[str, np.ndarray] = {}
    n = len(atoms)
    for target, key in ((keys.ENERGY, energy_key), (keys.FORCES, forces_key), (keys.STRESS, stress_key)):
        value = _lookup(atoms, key, where, target) if key is not None else _calculator_result(atoms, target)
        if value is None:
            continue
        value = np.asarray(value, dtype=np.float64)
        if target == keys.ENERGY:
            if value.size != 1:
                raise ValueError(f"{where}: energy {key!r} must be a scalar, got shape {value.shape}")
            value = value.reshape(())
        elif target == keys.FORCES:
            if value.shape != (n, 3):
                raise ValueError(f"{where}: forces {key!r} must have shape ({n}, 3), got {value.shape}")
        else:
            value = _stress_3x3(value, where)
        targets[target] = value * energy_factor
    for key in info_keys:
        targets[key] = np.asarray(_lookup(atoms, key, where, "property"), dtype=np.float64)
    return Structure.create(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, targets, where)


def _calculator_result(atoms: Atoms, name: str) -> Any:
    calc = atoms.calc
    results = getattr(calc, "results", None) or {}
    return results.get(name)


def _lookup(atoms: Atoms, key: str, where: str, what: str) -> Any:
    """Find ``key`` in the calculator results, info, arrays or database fields of ``atoms``."""
    places: list[tuple[str, Mapping[str, Any]]] = [
        ("calculator results", getattr(atoms.calc, "results", None) or {}),
        ("atoms.info", atoms.info),
        ("atoms.arrays", atoms.arrays),
        ("database key-value pairs", atoms.info.get("key_value_pairs") or {}),
        ("database data", atoms.info.get("data") or {}),
    ]
    for _, mapping in places:
        if key in mapping:
            return mapping[key]
    available = sorted(
        {k for _, m in places for k in m if k not in ("numbers", "positions", "key_value_pairs", "data")}
    )
    raise ValueError(f"{where}: no {what} under key {key!r} (available keys: {', '.join(available) or 'none'})")


def _stress_3x3(value: np.ndarray, where: str) -> np.ndarray:
    if value.size == 6:
        return voigt_6_to_full_3x3_stress(value.reshape(6))
    if value.size == 9:
        return value.reshape(3, 3)
    raise ValueError(f"{where}: stress must have 6 (Voigt) or 9 entries, got shape {value.shape}")
