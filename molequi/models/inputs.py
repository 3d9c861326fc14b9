"""Read a PyG ``Batch`` / ``Data`` or a plain dict into the tensors a model needs, building edges if absent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..data import keys


@dataclass
class GraphInputs:
    """The model-facing view of a batch of graphs.

    Attributes:
        z: ``[N]`` atomic numbers.
        pos: ``[N, 3]`` positions (Å).
        batch: ``[N]`` graph of each atom.
        num_graphs: number of graphs ``G``.
        edge_index: ``[2, E]`` (row 0 source j, row 1 target i).
        edge_shift: ``[E, 3]`` integer cell shifts (float dtype).
        cell: ``[G, 3, 3]`` lattice vectors as rows (zeros where non-periodic).
        pbc: ``[G, 3]`` bool.
    """

    z: torch.Tensor
    pos: torch.Tensor
    batch: torch.Tensor
    num_graphs: int
    edge_index: torch.Tensor
    edge_shift: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor


def _get(data: Any, key: str) -> torch.Tensor | None:
    if isinstance(data, Mapping):
        return data.get(key)
    return getattr(data, key, None) if key in data else None


def read_graph_inputs(data: Any, r_max: float) -> GraphInputs:
    """Collect the model inputs from ``data`` (PyG ``Data``/``Batch`` or a dict with the same keys).

    Edges within ``r_max`` are built with :func:`molequi.data.neighbor_list` when ``edge_index``
    is absent.

    Raises:
        ValueError: missing ``z`` or ``pos``, non-finite positions, or mismatched shapes.
    """
    z, pos = _get(data, keys.ATOMIC_NUMBERS), _get(data, keys.POSITIONS)
    if z is None or pos is None:
        raise ValueError("model input needs atomic numbers 'z' [N] and positions 'pos' [N, 3]")
    if pos.ndim != 2 or pos.shape[1] != 3 or z.shape != pos.shape[:1]:
        raise ValueError(f"model input: 'pos' must be [N, 3] and 'z' [N]; got {tuple(pos.shape)} and {tuple(z.shape)}")
    if not bool(torch.isfinite(pos).all()):
        raise ValueError("model input: positions contain NaN or infinite values")
    batch = _get(data, keys.BATCH)
    if batch is None:
        batch = torch.zeros_like(z)
    num_graphs = int(batch.max()) + 1 if batch.numel() else 1
    cell = _get(data, keys.CELL)
    cell = pos.new_zeros(num_graphs, 3, 3) if cell is None else cell.reshape(-1, 3, 3).to(pos.dtype)
    pbc = _get(data, keys.PBC)
    pbc = torch.zeros(num_graphs, 3, dtype=torch.bool, device=pos.device) if pbc is None else pbc.reshape(-1, 3)
    edge_index, edge_shift = _get(data, keys.EDGE_INDEX), _get(data, keys.EDGE_SHIFT)
    if edge_index is None:
        from ..data import neighbor_list

        edge_index, edge_shift = neighbor_list(pos.detach(), r_max, cell=cell, pbc=pbc, batch=batch)
    if edge_shift is None:
        edge_shift = pos.new_zeros(edge_index.shape[1], 3)
    return GraphInputs(z, pos, batch, num_graphs, edge_index, edge_shift.to(pos.dtype), cell, pbc)
