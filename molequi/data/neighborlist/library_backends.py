"""Neighbour-list candidates from cell-list libraries (ASE, vesin, matscipy), one graph at a time.

Each wrapper returns, for one structure, the pairs ``(i, j, S)`` with
``|pos[j] - pos[i] + S @ cell| < cutoff``, computed in float64 on the CPU.
vesin and matscipy are optional: :func:`available_library_backends` lists what is installed.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from molequi.data.neighborlist.systems import Systems

PairFn = Callable[[np.ndarray, np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _ase_pairs(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float):
    from ase.neighborlist import primitive_neighbor_list

    return primitive_neighbor_list("ijS", pbc, cell, pos, cutoff, self_interaction=False)


def _vesin_pairs(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float):
    from vesin import NeighborList

    box = cell if pbc.any() else np.zeros((3, 3))
    return NeighborList(cutoff=cutoff, full_list=True).compute(pos, box, pbc.tolist(), "ijS")


def _matscipy_pairs(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float):
    from matscipy.neighbours import neighbour_list

    if not pbc.any():
        # matscipy needs a cell that contains the atoms in non-periodic directions.
        origin = pos.min(axis=0) - 1.0
        cell = np.diag(pos.max(axis=0) - origin + 1.0)
        pos = pos - origin
    return neighbour_list("ijS", positions=pos, cell=cell, pbc=pbc, cutoff=cutoff)


_PAIR_FUNCTIONS: dict[str, tuple[str, PairFn]] = {
    # backend name: (module that must be importable, wrapper)
    "ase": ("ase", _ase_pairs),
    "vesin": ("vesin", _vesin_pairs),
    "matscipy": ("matscipy", _matscipy_pairs),
}


@functools.cache
def available_library_backends() -> tuple[str, ...]:
    """Names of the library backends whose package is installed (looked up once per process)."""
    return tuple(name for name, (module, _) in _PAIR_FUNCTIONS.items() if importlib.util.find_spec(module) is not None)


def library_candidates(systems: Systems, cutoff: float, backend: str) -> tuple[Tensor, Tensor, Tensor]:
    """Run a library backend on every graph of ``systems``.

    Args:
        systems: the normalised batch.
        cutoff: search radius (Angstrom).
        backend: one of ``"ase"``, ``"vesin"``, ``"matscipy"``.

    Returns:
        i [E] long (target), j [E] long (source), shift [E, 3] long, on ``pos.device``.

    Raises:
        ValueError: for an unknown backend; ImportError if its package is missing.
    """
    if backend not in _PAIR_FUNCTIONS:
        raise ValueError(f"unknown library backend {backend!r}")
    module, pairs = _PAIR_FUNCTIONS[backend]
    if backend not in available_library_backends():
        raise ImportError(f"neighbour-list backend {backend!r} needs the package {module!r} (pip install {module})")
    pos = systems.pos.detach().to("cpu", torch.float64).numpy()
    cell = systems.full_cell.cpu().numpy()
    pbc = systems.pbc.cpu().numpy()
    ptr = systems.ptr.tolist()
    out_i, out_j, out_s = [], [], []
    for g in range(systems.num_graphs):
        lo, hi = ptr[g], ptr[g + 1]
        if hi == lo:
            continue
        i, j, s = pairs(pos[lo:hi], cell[g], pbc[g], cutoff)
        out_i.append(np.asarray(i, dtype=np.int64) + lo)
        out_j.append(np.asarray(j, dtype=np.int64) + lo)
        out_s.append(np.asarray(s, dtype=np.int64).reshape(-1, 3))
    device = systems.pos.device
    if not out_i:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros(0, 3, dtype=torch.long, device=device)
    return tuple(torch.from_numpy(np.concatenate(a)).to(device) for a in (out_i, out_j, out_s))
