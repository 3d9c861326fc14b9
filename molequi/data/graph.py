"""Structures to molequi graphs (PyG :class:`~torch_geometric.data.Data`); see :mod:`molequi.data.keys`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from ase import Atoms
from torch_geometric.data import Data

from molequi.data import keys
from molequi.data.neighborlist import neighbor_list
from molequi.data.structure import Structure, structure_from_atoms
from molequi.data.validation import MIN_DISTANCE, check_cell, check_finite, check_min_distance, check_numbers
from molequi.nn.edge_embedding import edge_vectors


def structures_to_graphs(
    structures: Sequence[Structure],
    r_max: float,
    dtype: torch.dtype | None = None,
    elements: Iterable[int] | None = None,
) -> list[Data]:
    """Validate structures and build their graphs with one batched neighbour-list call.

    Args:
        structures: frames (see :class:`~molequi.data.structure.Structure`).
        r_max: cutoff radius (Angstrom, strict ``<``), at least 0.1.
        dtype: float dtype of positions, shifts, cell and per-atom targets
            (default: ``torch.get_default_dtype()``). Energies and stresses are float64
            whatever ``dtype`` (:data:`~molequi.data.keys.FLOAT64_TARGETS`): in float32 a
            total energy of ~-17,000 eV would keep only ~1 meV resolution.
        elements: if given, atomic numbers allowed (others raise).

    Returns:
        One :class:`Data` per structure with the keys of :mod:`molequi.data.keys`,
        each target of ``Structure.targets`` and the extra properties as ``[1]`` or
        ``[1, k]`` tensors.

    Raises:
        ValueError: naming the structure (``Structure.where``) for an unknown element,
            NaN/inf positions, cell or targets, or two atoms closer than 0.1 Angstrom.
    """
    if r_max < MIN_DISTANCE:
        raise ValueError(f"r_max must be at least {MIN_DISTANCE} A (the closest allowed distance), got {r_max}")
    dtype = dtype or torch.get_default_dtype()
    elements = None if elements is None else list(elements)
    if not structures:
        return []
    for s in structures:
        check_numbers(s.numbers, s.where, elements)
        check_finite("positions", s.positions, s.where)
        check_finite("cell", s.cell, s.where)
        check_cell(s.cell, s.pbc, s.where)
        for name, value in s.targets.items():
            check_finite(name, value, s.where)

    counts = torch.tensor([len(s.numbers) for s in structures])
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    pos = torch.from_numpy(np.concatenate([s.positions for s in structures]))
    cell = torch.from_numpy(np.stack([s.cell for s in structures]))
    pbc = torch.from_numpy(np.stack([s.pbc for s in structures]))
    batch = torch.repeat_interleave(torch.arange(len(structures)), counts)
    edge_index, edge_shift = neighbor_list(pos, r_max, cell, pbc, batch)

    length = edge_vectors(pos, edge_index, edge_shift, cell, batch).norm(dim=1).numpy()
    edge_counts = torch.bincount(batch[edge_index[1]], minlength=len(structures)).tolist()
    edge_ptr = np.concatenate([[0], np.cumsum(edge_counts)])

    graphs = []
    for g, s in enumerate(structures):
        lo, hi = edge_ptr[g], edge_ptr[g + 1]
        local_edges = edge_index[:, lo:hi] - ptr[g]
        check_min_distance(length[lo:hi], local_edges.numpy(), s.where)
        graphs.append(_make_data(s, local_edges, edge_shift[lo:hi], r_max, dtype))
    return graphs


def _make_data(
    s: Structure, edge_index: torch.Tensor, edge_shift: torch.Tensor, r_max: float, dtype: torch.dtype
) -> Data:
    data = Data(
        **{
            keys.ATOMIC_NUMBERS: torch.from_numpy(s.numbers).long(),
            keys.POSITIONS: torch.from_numpy(s.positions).to(dtype),
            keys.EDGE_INDEX: edge_index.contiguous(),
            keys.EDGE_SHIFT: edge_shift.to(dtype),
            keys.CELL: torch.from_numpy(s.cell).to(dtype).reshape(1, 3, 3),
            keys.PBC: torch.from_numpy(s.pbc).reshape(1, 3),
            keys.R_MAX: repr(float(r_max)),
        }
    )
    for name, value in s.targets.items():
        # total energies and stresses stay float64: float32 resolves only ~2 meV of -17,000 eV
        tensor = torch.tensor(value, dtype=torch.float64 if name in keys.FLOAT64_TARGETS else dtype)
        if name == keys.FORCES:
            data[name] = tensor.reshape(-1, 3)
        elif name == keys.STRESS:
            data[name] = tensor.reshape(1, 3, 3)
        elif tensor.numel() == 1:
            data[name] = tensor.reshape(1)
        else:
            data[name] = tensor.reshape(1, -1)
    return data


def atoms_to_graph(
    atoms: Atoms,
    r_max: float,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    dtype: torch.dtype | None = None,
) -> Data:
    """One :class:`ase.Atoms` as a molequi graph.

    Args:
        atoms: the structure (positions in Angstrom; targets in eV-based units).
        r_max: cutoff radius, Angstrom (edges with distance ``< r_max``).
        energy_key, forces_key, stress_key: where to read targets; None takes the
            calculator's result when present (see :func:`~molequi.data.structure.structure_from_atoms`).
        dtype: float dtype (default ``torch.get_default_dtype()``).

    Returns:
        :class:`Data` with ``z [N]``, ``pos [N, 3]``, ``edge_index [2, E]``,
        ``edge_shift [E, 3]``, ``cell [1, 3, 3]``, ``pbc [1, 3]``, the cutoff ``r_max``
        (text, see :mod:`molequi.data.keys`) and, where present,
        ``energy [1]``, ``forces [N, 3]``, ``stress [1, 3, 3]``.

    Raises:
        ValueError: for a requested key that is missing, an unknown element, NaN/inf
            coordinates or two atoms closer than 0.1 Angstrom.
    """
    structure = structure_from_atoms(atoms, energy_key, forces_key, stress_key, where="atoms")
    return structures_to_graphs([structure], r_max, dtype)[0]
