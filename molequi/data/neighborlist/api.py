"""The public neighbour-list function and its backend choice."""

from __future__ import annotations

import torch
from torch import Tensor

from molequi.data.neighborlist.library_backends import available_library_backends, library_candidates
from molequi.data.neighborlist.postprocess import finalize_edges
from molequi.data.neighborlist.systems import Systems, make_systems
from molequi.data.neighborlist.torch_backend import torch_candidates

#: Backends searched with this much extra radius (Angstrom) before the exact filter.
SEARCH_MARGIN = 1e-6

#: Largest non-periodic graph for which ``backend="auto"`` uses the all-pairs torch
#: backend on the CPU when vesin is not installed (see ``benchmarks/neighbor_list_bench.py``).
AUTO_TORCH_MAX_ATOMS = 200


def available_backends() -> list[str]:
    """Names accepted by :func:`neighbor_list` in this environment (besides ``"auto"``)."""
    return ["torch", *available_library_backends()]


def neighbor_list(
    pos: Tensor,
    r_max: float,
    cell: Tensor | None = None,
    pbc: Tensor | bool | None = None,
    batch: Tensor | None = None,
    backend: str = "auto",
    self_interaction: bool = False,
) -> tuple[Tensor, Tensor]:
    """Radius graph of one or many (periodic) structures.

    An edge ``j -> i`` with shift ``S`` exists iff
    ``|pos[j] - pos[i] + S @ cell| < r_max`` (strict), for every lattice translation
    ``S`` allowed by ``pbc``, except ``i == j`` with ``S == 0`` unless
    ``self_interaction``. An atom therefore sees its own periodic images in small
    cells. Every backend gives the same edges in the same order, sorted by
    (target i, source j, shift).

    Args:
        pos: [N, 3] positions, Angstrom (any float dtype, any device).
        r_max: cutoff radius, Angstrom.
        cell: None (non-periodic), [3, 3] or [B, 3, 3] lattice vectors as rows.
        pbc: None (all False), a bool, [3] or [B, 3] periodicity flags.
        batch: None (one graph) or [N] long graph of each atom, sorted ascending.
        backend: ``"auto"``, ``"torch"``, ``"ase"``, ``"vesin"`` or ``"matscipy"``
            (the last two if installed; see :func:`available_backends`). ``"auto"``
            takes the fastest measured: torch for molecules on a GPU; else vesin if
            installed; else ASE for molecules of more than :data:`AUTO_TORCH_MAX_ATOMS`
            atoms and torch for the rest.
        self_interaction: also return the self pairs (i, i, 0).

    Returns:
        edge_index: [2, E] long, row 0 = source j, row 1 = target i (PyG order).
        edge_shift: [E, 3] integer shifts in the dtype of ``pos``, such that
        ``pos[edge_index[0]] - pos[edge_index[1]] + edge_shift @ cell`` is the vector
        from i to the image of j. Both on the device of ``pos``.

    Raises:
        ValueError: on bad shapes, non-finite values, a singular periodic cell, a
            non-positive ``r_max`` or an unknown backend.
    """
    if not r_max > 0:
        raise ValueError(f"r_max must be positive, got {r_max}")
    systems = make_systems(pos, cell, pbc, batch)
    name = _choose_backend(systems) if backend == "auto" else backend
    cutoff = float(r_max) + SEARCH_MARGIN
    with torch.no_grad():
        if name == "torch":
            i, j, shift = torch_candidates(systems, cutoff)
        elif name in ("ase", "vesin", "matscipy"):
            i, j, shift = library_candidates(systems, cutoff, name)
        else:
            raise ValueError(
                f"unknown neighbour-list backend {backend!r}; choose from auto, {', '.join(available_backends())}"
            )
        return finalize_edges(systems, i, j, shift, float(r_max), self_interaction)


def _choose_backend(systems: Systems) -> str:
    """The backend ``"auto"`` stands for, from ``benchmarks/neighbor_list_bench.py``.

    On 2 CPU cores vesin (C++ cell list) was within noise of the fastest on single
    molecules, among the fastest on batches of molecules and ~7x faster than torch or ASE
    on a 999-atom water box. Without it, torch beat ASE on molecules and on the box; ASE
    stays for large molecules, where torch compares all pairs. On a GPU, torch keeps
    molecules on the device.
    """
    if not systems.any_periodic and systems.pos.is_cuda:
        return "torch"
    if "vesin" in available_library_backends():
        return "vesin"
    if not systems.any_periodic and int(systems.counts().max()) > AUTO_TORCH_MAX_ATOMS:
        return "ase"
    return "torch"

