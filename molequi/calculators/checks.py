"""Input checks shared by the calculator and batched prediction: a clear ``ValueError``, never a silent number."""

from __future__ import annotations

from collections.abc import Sequence

from ase import Atoms
from torch import Tensor

from ..data.validation import MIN_DISTANCE, check_finite, check_min_distance, check_numbers


def check_atoms(atoms: Atoms, elements: Sequence[int] | None, where: str) -> None:
    """Reject an empty structure, elements outside the models' species, and NaN/inf positions or cell.

    Args:
        atoms: the structure.
        elements: atomic numbers every model knows (None: any element).
        where: prefix for the error message, e.g. ``"atoms"`` or ``"structure 3"``.
    """
    if len(atoms) == 0:
        raise ValueError(f"{where}: the structure has no atoms")
    check_numbers(atoms.numbers, where, elements, known_as="the model's species")
    check_finite("positions", atoms.positions, where)
    check_finite("cell", atoms.cell.array, where)


def check_edge_lengths(length: Tensor, edge_index: Tensor, where: str) -> None:
    """Reject two atoms (or an atom and its periodic image) closer than 0.1 Å.

    Args:
        length: ``[E]`` edge lengths (Å) of the structure's radius graph, on any device.
        edge_index: ``[2, E]`` atom indices of the edges.
        where: prefix for the error message.
    """
    if length.numel() and float(length.min()) < MIN_DISTANCE:  # one scalar leaves the device
        check_min_distance(length.cpu().numpy(), edge_index.cpu().numpy(), where)
